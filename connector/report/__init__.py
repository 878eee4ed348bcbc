"""What a run tells: totals, reject ratio and freshness (``health``, pure), the CLI summary
(``summary``) and the live progress line (``progress``)."""
