"""The state store: one schema with every table and its migrations (``schema``, ``migrate``),
and ``state.StateStore`` put together from one module per concern: ``checkpoints``, ``ledger``
(the batch ledger's rows), ``rejects``, ``runs`` and ``settings`` (learned account settings and
property types), on ``base`` and ``positions``; and the run lease (``lease``)."""
