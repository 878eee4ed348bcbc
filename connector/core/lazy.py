"""pyarrow (and its compute and csv modules) and numpy, imported on first use (issue 22, item 9).

A no-op ``connector sync`` (nothing after the checkpoint) and ``state``, ``rejects`` and
``validate`` never touch an Arrow array, yet the modules they import name pyarrow: importing
pyarrow and numpy costs ~0.14 s of a process start. Those modules write::

    if TYPE_CHECKING:
        import pyarrow as pa
    else:
        from ..core.lazy import pa

and use ``pa`` as before: the first attribute read imports the real module and copies its
namespace into the stand-in, so later reads are plain dictionary look-ups (no ``__getattr__``
call), as fast as on the module itself. Nothing may read an attribute at import time (a module
constant such as ``pa.string()``): that would import pyarrow again for every process.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule(ModuleType):
    """A stand-in for a module that imports it when one of its attributes is first read."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)  # copy, pickle and introspection: do not import
        real = importlib.import_module(self.__name__)
        self.__dict__.update(real.__dict__)
        return getattr(real, name)


pa = LazyModule("pyarrow")
pc = LazyModule("pyarrow.compute")
pa_csv = LazyModule("pyarrow.csv")
np = LazyModule("numpy")
