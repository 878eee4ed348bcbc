"""Process-wide settings for processes the connector owns (the ``connector`` command, the
benchmark): not applied when the package is imported as a library."""

from __future__ import annotations

import contextlib
import os

import pyarrow as pa

POOL_ENV = "ARROW_DEFAULT_MEMORY_POOL"


def use_lean_memory_pool() -> str:
    """Arrow's jemalloc pool, unless ``ARROW_DEFAULT_MEMORY_POOL`` chooses one.

    Measured on the 1,000,000-row benchmark (docs/performance.md): the default mimalloc pool
    keeps freed pages, jemalloc hands them back: ~20 MiB less peak memory at the same speed.
    Returns the backend in use.
    """
    if not os.environ.get(POOL_ENV):
        # A pyarrow build without jemalloc raises NotImplementedError: keep its default.
        with contextlib.suppress(NotImplementedError):
            pa.set_memory_pool(pa.jemalloc_memory_pool())
    return pa.default_memory_pool().backend_name
