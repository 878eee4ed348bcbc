"""How failed and terminated runs read in Dagster's event log: the connector's message and the
counts, no Python stack; a failed sync is one failed step (its checks run in that step); the
partitions a ranged run finished before it failed stay materialized."""

from __future__ import annotations

import os
import signal
import uuid

import dagster as dg
import pytest

from connector.sandbox.faults import Fault
from dagster_defs.schedules import RANGE_END_TAG, RANGE_START_TAG
from tests.dagster_fixtures import (
    PARTITIONED,
    PLAYS_KEY,
    Env,
    create_table,
    dated_rows,
    env,
    klaviyo_ids,
    quiet_sandbox,
)

__all__ = ["env", "quiet_sandbox"]  # fixtures used by name

DAYS = ("2026-11-01", "2026-11-03")  # a ranged run over three partitions


def _run_range(env: Env, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    asset = env.defs().resolve_assets_def(PLAYS_KEY)
    return dg.materialize(
        [asset],
        instance=instance,
        tags={RANGE_START_TAG: DAYS[0], RANGE_END_TAG: DAYS[1]},
        raise_on_error=False,
    )


def _events(instance: dg.DagsterInstance, run_id: str, kind: str) -> list[dg.EventLogEntry]:
    return [
        e
        for e in instance.all_logs(run_id)
        if e.dagster_event is not None and e.dagster_event.event_type_value == kind
    ]


def _materialized(instance: dg.DagsterInstance, run_id: str) -> dict[str | None, int]:
    """Partition → rows delivered, of the materializations a run recorded."""
    out = {}
    for record in instance.fetch_materializations(PLAYS_KEY, limit=20).records:
        mat = record.asset_materialization
        if record.run_id == run_id and mat is not None:
            out[mat.partition] = int(mat.metadata["delivered"].value)  # type: ignore[arg-type]
    return out


def _error_of(entry: dg.EventLogEntry) -> tuple[str, list[str], str | None]:
    data = entry.dagster_event.event_specific_data  # type: ignore[union-attr]
    error = data.error  # type: ignore[union-attr]
    assert error is not None
    return error.message, list(error.stack), error.cls_name


def test_a_failed_sync_fails_one_step_with_the_message_and_counts_and_no_stack(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_table(env.warehouse, dated_rows(days=3, per_day=4))
    env.write_sync("plays", PARTITIONED, warn=0.5, error=0.9)
    # The first two partitions go through, the third partition's request is refused (401).
    env.sandbox.inject(
        Fault(delay_s=0.001, times=2), Fault(status=401, body={"errors": [{"detail": "no"}]})
    )
    instance = dg.DagsterInstance.ephemeral()
    result = _run_range(env, instance)
    assert not result.success

    [step_failure] = _events(instance, result.run_id, "STEP_FAILURE")
    message, stack, cls_name = _error_of(step_failure)
    assert stack == [] and cls_name == "SyncFailed"
    assert "dagster._core" not in message and "Traceback" not in message
    assert message.startswith("plays: partition:2026-11-03 failed: ")
    # 12 read: the failed partition's 4 were read, not delivered.
    assert "this run delivered 8, rejected 0 of 12 rows read" in message
    assert "Re-execute resumes after them" in message
    failure_data = step_failure.dagster_event.step_failure_data  # type: ignore[union-attr]
    assert failure_data is not None and failure_data.user_failure_data is not None
    assert failure_data.user_failure_data.metadata["delivered"].value == 8
    [run_failure] = _events(instance, result.run_id, "PIPELINE_FAILURE")
    assert _error_of(run_failure)[1] == []  # the run failure repeats no stack either
    # One failed step: the checks are evaluated in the sync's step, so no dependent check
    # step is skipped with an error of its own.
    errors = [e for e in instance.all_logs(result.run_id) if int(e.level) >= 40]
    kinds = sorted(e.dagster_event.event_type_value for e in errors if e.dagster_event)
    assert kinds == ["PIPELINE_FAILURE", "STEP_FAILURE"]
    # The two partitions delivered before the failure are materialized with their counts.
    assert _materialized(instance, result.run_id) == {"2026-11-01": 4, "2026-11-02": 4}
    assert sorted(klaviyo_ids(env.sandbox)) == sorted(
        r["event_id"] for r in dated_rows(days=2, per_day=4)
    )


def test_a_terminated_run_reports_what_it_delivered(env: Env) -> None:
    create_table(env.warehouse, dated_rows(days=3, per_day=4))
    env.write_sync("plays", PARTITIONED, warn=0.5, error=0.9)
    job = dg.define_asset_job("plays_job", selection=[PLAYS_KEY])
    defs = dg.Definitions.merge(env.defs(), dg.Definitions(jobs=[job]))
    instance = dg.DagsterInstance.ephemeral()
    run_id = str(uuid.uuid4())
    sent: list[str] = []

    def terminate_at_third_partition(event: dg.EventLogEntry, _cursor: str) -> None:
        # Runs in the step's thread as the event is stored: SIGINT, as Dagster's termination
        # of a run sends, after the plan line of the third partition.
        if not sent and "plays: partition:2026-11-03: plan:" in event.user_message:
            sent.append(event.user_message)
            os.kill(os.getpid(), signal.SIGINT)

    instance.event_log_storage.watch(run_id, "", terminate_at_third_partition)
    result = defs.resolve_job_def("plays_job").execute_in_process(
        instance=instance,
        run_id=run_id,
        tags={RANGE_START_TAG: DAYS[0], RANGE_END_TAG: DAYS[1]},
        raise_on_error=False,
    )
    assert sent and not result.success

    [step_failure] = _events(instance, result.run_id, "STEP_FAILURE")
    message, stack, cls_name = _error_of(step_failure)
    assert stack == [] and cls_name == "SyncInterrupted"
    assert message.startswith(
        "plays: partition:2026-11-03 was interrupted (the run was terminated)"
    )
    assert "this run delivered 8, rejected 0 of 8 rows read" in message
    # The finished partitions are materialized; the interrupted one is not.
    assert _materialized(instance, result.run_id) == {"2026-11-01": 4, "2026-11-02": 4}
    assert len(klaviyo_ids(env.sandbox)) == 8


def test_the_failure_message_says_what_a_re_execution_does_for_each_kind_of_sync() -> None:
    """Resume after the delivered rows only when some were delivered; an event sync that
    delivered nothing starts from the same checkpoint; a contact sync has no checkpoint."""
    from pathlib import Path

    from connector import SyncResult, load_sync
    from dagster_defs.metadata import resume_hint
    from dagster_defs.scopes import Scope

    shipped = Path(__file__).resolve().parents[2] / "config"
    events = load_sync("video_played", shipped, check_env=False)
    contacts = load_sync("customers_to_brevo", shipped, check_env=False)
    scope = Scope(name="incremental")

    def done(delivered: int) -> list[tuple[Scope, SyncResult]]:
        return [(scope, SyncResult("s", "incremental", None, rows_read=10, delivered=delivered))]

    assert resume_hint(events, done(4)) == (
        "Delivered rows are checkpointed: Re-execute resumes after them."
    )
    assert (
        resume_hint(events, done(0))
        == resume_hint(events, [])
        == ("The checkpoint did not move: Re-execute starts again from it.")
    )
    hint = resume_hint(contacts, done(3))
    assert hint == resume_hint(contacts, done(0))
    assert "checkpoint" not in hint and "not yet confirmed" in hint
