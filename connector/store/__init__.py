"""The state store: one schema with its migrations (``schema``, ``migrate``), checkpoints,
ledger, rejects, runs and learned settings (``state``) and the run lease (``lease``)."""
