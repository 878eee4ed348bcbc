"""The message of a warehouse whose driver (or SQLAlchemy dialect) is not installed: a config
error (exit 2) naming the missing module and how to install it."""

from __future__ import annotations


def missing_driver(where: str, url: str, extra: str | None, detail: str, exc: BaseException) -> str:
    """``where``: the sync file and field; ``extra``: the connector's install extra of the
    warehouse (None: the driver is not one of the connector's extras); ``detail``: the
    driver's error, scrubbed of secrets."""
    scheme = url.partition("://")[0]
    module = getattr(exc, "name", None) or "its SQLAlchemy dialect"
    if extra:
        how = f"pip install 'warehouse-events-connector[{extra}]'"
    else:
        how = f"pip install {module}" if module != "its SQLAlchemy dialect" else "install it"
        how += " (docs/warehouses.md lists the drivers the connector supports)"
    return (
        f"{where}: a {scheme}:// warehouse needs {module}, which is not installed "
        f"({detail[:160]}): {how}"
    )
