"""Delivery, for either kind of destination: the one factory of a sync's destination
(``factory``), pacing (``ratelimit``, ``shared_pacer``: the pacer choice of every run), the one
HTTP loop of every request (``http_loop``), reading outcomes (``outcomes``) and the event batch
sender (``delivery``)."""
