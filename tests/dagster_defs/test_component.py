"""The Component as ``dg`` users meet it, through Dagster's own ``dg`` CLI: listed by the
registry entry point, scaffolded with a sample sync file, and instantiated twice in one
project without conflicts (resource keys, asset keys, ops and schedules per instance)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

DG = str(Path(sys.executable).with_name("dg"))


def _dg(project: Path, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(project / "src")}
    env.pop("CONNECTOR_CONFIG_DIR", None)
    proc = subprocess.run(
        [DG, *args], cwd=project, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


def _project(root: Path) -> Path:
    """A minimal dg project, as `create-dagster project` lays it out."""
    (root / "src" / "proj" / "defs").mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        textwrap.dedent("""
        [project]
        name = "proj"
        version = "0.1.0"
        requires-python = ">=3.11"

        [tool.dg]
        directory_type = "project"

        [tool.dg.project]
        root_module = "proj"
        """)
    )
    (root / "src" / "proj" / "__init__.py").write_text("")
    (root / "src" / "proj" / "defs" / "__init__.py").write_text("")
    (root / "src" / "proj" / "definitions.py").write_text(
        textwrap.dedent("""
        from pathlib import Path

        import dagster as dg


        @dg.definitions
        def defs() -> dg.Definitions:
            return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
        """)
    )
    return root


@pytest.mark.slow
def test_dg_lists_scaffolds_and_loads_two_instances_of_the_component(tmp_path: Path) -> None:
    project = _project(tmp_path / "proj")
    assert "dagster_defs.ReverseEtlComponent" in _dg(project, "list", "components")

    for name in ("reverse_etl", "reverse_etl2"):  # e.g. a second team's config dir
        _dg(project, "scaffold", "defs", "dagster_defs.ReverseEtlComponent", name)
    defs_dir = project / "src" / "proj" / "defs"
    assert (
        "type: dagster_defs.ReverseEtlComponent"
        in (defs_dir / "reverse_etl" / "defs.yaml").read_text()
    )
    sample = defs_dir / "reverse_etl2" / "config" / "syncs" / "example_events.yaml"
    assert "name: reverse_etl2_example_events" in sample.read_text()

    listed = json.loads(_dg(project, "list", "defs", "--json"))
    keys = {a["asset_key"] for a in listed["assets"]}
    assert keys == {
        "reverse_etl/reverse_etl_example_events",
        "reverse_etl2/reverse_etl2_example_events",
        "warehouse/analytics/events",  # declared once, by the first instance
    }
    assert {r["name"] for r in listed["resources"]} >= {"connector", "connector_reverse_etl2"}
    assert {s["name"] for s in listed["schedules"]} == {
        "reverse_etl_reverse_etl_example_events_schedule",
        "reverse_etl2_reverse_etl2_example_events_schedule",
    }
    second = next(a for a in listed["assets"] if a["asset_key"].startswith("reverse_etl2/"))
    assert second["source"].endswith("reverse_etl2/config/syncs/example_events.yaml:1")
