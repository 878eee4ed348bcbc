"""Runs: one sync run end to end. ``sync`` (``run_sync``, ``preview``) picks a strategy and runs
it in the run shell (``shell``: lease, run record, rows handled, progress, timing); the
strategies are ``events`` (the event ledger strategy), ``retry`` (``retry_rejects``) and
``contacts`` (the contact diff strategy, with ``contact_jobs`` and ``unlist``). Beside them:
their result (``result``), the circuit breaker (``breaker``), which delivered rows close an
open reject (``openrejects``), the estimate of a run before it starts (``run_plan``) and the
notebook preview (``frame``)."""
