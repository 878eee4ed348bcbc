"""core/process: the connector process's memory pool."""

from __future__ import annotations

import pyarrow as pa
import pytest


def test_the_connector_process_uses_jemalloc_unless_the_arrow_variable_says_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from connector.core.process import use_lean_memory_pool

    before = pa.default_memory_pool()
    try:
        monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "system")
        assert use_lean_memory_pool() == before.backend_name  # the user's choice stands
        monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL")
        assert use_lean_memory_pool() == "jemalloc"
    finally:
        pa.set_memory_pool(before)
