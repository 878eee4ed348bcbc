"""Process-wide settings for processes the connector owns (the ``connector`` command, the
benchmark): not applied when the package is imported as a library."""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import os
import sys
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

POOL_ENV = "ARROW_DEFAULT_MEMORY_POOL"


def use_lean_memory_pool() -> str:
    """Arrow's jemalloc pool, unless ``ARROW_DEFAULT_MEMORY_POOL`` chooses one.

    Measured on the 1,000,000-row benchmark (docs/performance.md): the default mimalloc pool
    keeps freed pages, jemalloc hands them back: ~20 MiB less peak memory at the same speed.
    When pyarrow is not imported yet the pool is set when it is (an import hook): a run that
    reads no rows (a no-op sync) never imports pyarrow. Returns the backend in use, or
    ``"deferred"`` when pyarrow is not imported yet.
    """
    _limit_malloc_arenas()
    if "pyarrow" not in sys.modules:
        if not any(isinstance(f, _PoolOnImport) for f in sys.meta_path):
            sys.meta_path.insert(0, _PoolOnImport())
        return "deferred"
    return _set_pool(sys.modules["pyarrow"])


def _set_pool(pa: Any) -> str:
    if not os.environ.get(POOL_ENV):
        # A pyarrow build without jemalloc raises NotImplementedError: keep its default.
        with contextlib.suppress(NotImplementedError):
            pa.set_memory_pool(pa.jemalloc_memory_pool())
    return str(pa.default_memory_pool().backend_name)


class _PoolOnImport:
    """Import hook: when ``pyarrow`` is first imported, set its memory pool right after."""

    def find_spec(
        self, name: str, path: Any = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name != "pyarrow":
            return None
        sys.meta_path.remove(self)  # once; and find the real spec without this hook
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        run = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run(module)
            _set_pool(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


class _NoPandas:
    """Import hook: ``import pandas`` fails as if it were not installed."""

    def find_spec(
        self, name: str, path: Any = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError("pandas is kept out of connector processes", name=name)
        return None


def keep_pandas_out() -> bool:
    """Keep pandas out of a process that only runs the connector (the ``connector`` command,
    the benchmark): pyarrow imports pandas on its first ``pa.array``/``pa.scalar`` when it is
    installed (it is, for Dagster), which costs ~35 MiB of memory and nothing here uses it.
    Not applied when pandas is already loaded or ``CONNECTOR_ALLOW_PANDAS`` is set. Returns
    whether the hook is in place."""
    if "pandas" in sys.modules or os.environ.get("CONNECTOR_ALLOW_PANDAS"):
        return False
    if not any(isinstance(f, _NoPandas) for f in sys.meta_path):
        sys.meta_path.insert(0, _NoPandas())
    return True


class _NoHttpxCli:
    """Import hook: httpx's own command line (``httpx._main``) is not found, so ``import httpx``
    skips it and the rich, pygments and click imports it makes when they are installed (they
    are, for Dagster): ~50 ms of CPU at every ``connector`` start (docs/performance.md)."""

    def find_spec(
        self, name: str, path: Any = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name == "httpx._main":  # httpx defines a stub ``main`` when this import fails
            raise ModuleNotFoundError("httpx's command line is not used here", name=name)
        return None


def keep_httpx_cli_out() -> bool:
    """Keep httpx's command line (and rich, pygments, click) out of a process that only runs the
    connector; not applied when httpx is already loaded. Returns whether the hook is in place."""
    if "httpx" in sys.modules:
        return False
    if not any(isinstance(f, _NoHttpxCli) for f in sys.meta_path):
        sys.meta_path.insert(0, _NoHttpxCli())
    return True


PYDANTIC_PLUGINS_ENV = "PYDANTIC_DISABLE_PLUGINS"


def skip_pydantic_plugins() -> bool:
    """No pydantic plugins in a process that only runs the connector, unless
    ``PYDANTIC_DISABLE_PLUGINS`` is set (to anything, an empty value keeps them): pydantic
    looks for plugins at its first model by reading the entry points of every installed
    distribution, ~45 ms of CPU at every ``connector`` start with Dagster's (docs/performance.md),
    and the connector uses none. Returns whether they are skipped."""
    if PYDANTIC_PLUGINS_ENV in os.environ:
        return False
    os.environ[PYDANTIC_PLUGINS_ENV] = "__all__"
    return True


def skip_the_last_collection() -> None:
    """Call as the process is about to exit: every object left lives until then, so move them
    out of the cyclic collector's reach (``gc.freeze``) and the interpreter's shutdown does not
    walk them all once more, ~0.1 s of CPU with SQLAlchemy, DuckDB and pydantic loaded
    (docs/performance.md). Files, connections and ``atexit`` handlers close as before: only
    the collector's pass is skipped."""
    gc.freeze()


def _limit_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives each thread that allocates its own malloc arena (the sender threads, DuckDB's
    worker), each keeping freed memory: two arenas is what ``MALLOC_ARENA_MAX=2`` sets, applied
    here because the environment variable is read only when the process starts. Not on other
    C libraries, and not when ``MALLOC_ARENA_MAX`` is set."""
    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-8, arenas)  # M_ARENA_MAX
