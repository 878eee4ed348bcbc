"""Reading the warehouse: keyset pages in ``(cursor, key)`` order (``source``), the keys
that occur twice (``dupkeys``) and a read-ahead thread (``readahead``)."""
