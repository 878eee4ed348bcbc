"""Runs: one sync run end to end (``sync``: event syncs, ``contacts``: contact syncs), their
result (``result``), the reject-ratio rule (``breaker``), the estimate of a run before it
starts (``run_plan``) and the notebook preview (``frame``)."""
