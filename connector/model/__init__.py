"""The canonical model the stages pass along: columnar events (``events``: ``Chunk``,
``Events``, ``Props`` and the value conversions) and exact JSON fragments (``jsonfrag``)."""
