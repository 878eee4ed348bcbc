"""Planning the requests of a run: the exactly-once ledger (``ledger``, pure), the chunk planner
(``planner``: validate, duplicate keys, encode) and batching by count and bytes
(``batching``)."""
