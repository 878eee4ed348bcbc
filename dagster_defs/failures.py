"""Failures as the Dagster UI shows them: the connector's message and the counts, no stack.

A ``dg.Failure`` raised in an asset is recorded with its Python traceback: the run page then
shows ``dagster._core.definitions.events.Failure: …`` and a dozen frames of Dagster's own
executor, and the run failure repeats them. Nothing in those frames helps the person on call: the
message already names the sync, the scope, the cause and the fix. So the asset raises
:class:`SyncFailed` (and, when the run is terminated, :class:`SyncInterrupted`), which carry a
ready-made error record (message, no frames): Dagster 1.13 records such an error as it is
(``serializable_error_info_from_exc_info`` keeps the record of a
``DagsterUserCodeProcessError``), and still treats a ``SyncFailed`` as a ``Failure`` (its
description and metadata on the step failure, ``allow_retries``) and a ``SyncInterrupted`` as
an interrupt (the run is canceled, not retried). tests/dagster_defs/test_failures.py pins this.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster._core.errors import DagsterExecutionInterruptedError, DagsterUserCodeProcessError
from dagster._utils.error import SerializableErrorInfo


def _record(message: str, cls_name: str) -> SerializableErrorInfo:
    return SerializableErrorInfo(message=message, stack=[], cls_name=cls_name)


class SyncFailed(dg.Failure, DagsterUserCodeProcessError):
    """A failed sync: the step fails with ``description`` (and ``metadata``), without a stack."""

    def __init__(
        self,
        description: str,
        metadata: Mapping[str, Any] | None = None,
        *,
        allow_retries: bool = True,
    ) -> None:
        # Failure.__init__ would reach DagsterUserCodeProcessError.__init__ through the MRO:
        # a plain Failure checks and normalizes the fields, this one takes them over.
        checked = dg.Failure(
            description=description, metadata=metadata, allow_retries=allow_retries
        )
        Exception.__init__(self, description)
        self.description = checked.description
        self.metadata = checked.metadata
        self.allow_retries = checked.allow_retries
        self.user_code_process_error_infos = [_record(description, "SyncFailed")]


class SyncInterrupted(DagsterExecutionInterruptedError, DagsterUserCodeProcessError):
    """A terminated run, with what it delivered before it stopped."""

    def __init__(self, message: str) -> None:
        DagsterExecutionInterruptedError.__init__(self, message)
        self.user_code_process_error_infos = [_record(message, "SyncInterrupted")]
