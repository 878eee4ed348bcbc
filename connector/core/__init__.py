"""The leaves every stage uses: the error hierarchy (``errors``), the option models shared by
destinations (``options``), log records that name their sync and run (``logcontext``) and
process-wide settings for processes the connector owns (``process``)."""
