"""The warehouse seam: what differs between warehouses, one module per kind (``registry``)."""

from .base import KINDS, Warehouse
from .registry import (
    WAREHOUSE_MODULES,
    backend,
    embedded_file,
    engine_for,
    release_engine,
    warehouse_for,
    warehouses,
)

__all__ = [
    "KINDS",
    "WAREHOUSE_MODULES",
    "Warehouse",
    "backend",
    "embedded_file",
    "engine_for",
    "release_engine",
    "warehouse_for",
    "warehouses",
]
