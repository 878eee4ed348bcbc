"""The public API (``connector.__all__``): the names users import stay, each resolves to what
its module defines, and none of them costs an import at ``import connector`` time."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

import connector

# The public names. Removing or renaming one breaks users' code: change this list only on
# purpose, and say so in the commit.
PUBLIC = {
    "INCREMENTAL",
    "AuthError",
    "ConfigError",
    "ConnectorError",
    "DeliveryError",
    "Reader",
    "RequestError",
    "RetriesExhausted",
    "Runtime",
    "SourceError",
    "StateError",
    "StateStore",
    "SyncConfig",
    "SyncResult",
    "SyncSet",
    "Window",
    "__version__",
    "json_schema",
    "load_sync",
    "load_syncs",
    "parse_sync",
    "preview",
    "preview_frame",
    "run_sync",
}


def test_all_lists_exactly_the_public_names() -> None:
    assert set(connector.__all__) == PUBLIC
    assert len(connector.__all__) == len(PUBLIC), "a name is listed twice in __all__"


def test_every_public_name_resolves_to_its_defining_module() -> None:
    for name in sorted(PUBLIC - {"__version__"}):
        value = getattr(connector, name)
        module = connector._EXPORTS[name]
        assert value is getattr(__import__(f"connector{module}", fromlist=[name]), name), (
            f"connector.{name} is not {module}.{name}"
        )
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), f"connector.{name} has no docstring"


def test_errors_share_one_base_class() -> None:
    for name in ("AuthError", "ConfigError", "DeliveryError", "RequestError", "SourceError"):
        assert issubclass(getattr(connector, name), connector.ConnectorError), name


def test_an_unknown_name_is_an_attribute_error_naming_it() -> None:
    try:
        connector.run_syncs  # noqa: B018
    except AttributeError as exc:
        assert "run_syncs" in str(exc)
    else:
        raise AssertionError("connector.run_syncs resolved")


def test_import_connector_imports_no_stage() -> None:
    probe = (
        "import json, sys, connector; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('connector.'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out) == []
