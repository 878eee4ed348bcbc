"""Delivery: pacing (``ratelimit``, ``shared_pacer``, ``contact_pacing``), the HTTP loop
(``http_loop``), reading outcomes (``outcomes``), the batch sender (``delivery``) and the
contact job client (``job_http``)."""
