"""tests/ mirrors the modules: ``tests/<package>/test_<module>.py`` tests
``connector/<package>/<module>.py``, ``tests/dagster_defs/test_<module>.py`` tests
``dagster_defs/<module>.py``, and ``tests/e2e/`` holds the scenarios that run a whole sync, CLI
or Dagster flow across stages (named by scenario). A file named after its package
(``tests/verify/test_verify.py``) tests the package as a whole.

So a module renamed or moved without its test file, a test folder left behind by a package that
moved, or a new test file dropped at the top of tests/ fails here, naming the file and the fix.
The order the suite runs in (``worksteal_order`` of tests/conftest.py) is checked here too.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Folders of tests/ that mirror no package: shared data and the scenarios.
NOT_MIRRORED = {"e2e", "openapi", "toy", "__pycache__"}

# The only test files at the top of tests/, on purpose: tests/ itself mirrors connector/, so the
# connector package's own tests (its public API, its module map) are test_connector.py; and
# this guard. Everything else belongs in the folder of the package it tests, or in e2e/.
TOP_LEVEL = {"test_layout.py", "test_connector.py"}


def _source_dir(root: Path, test_dir: Path) -> Path:
    """The package folder a test folder mirrors: tests/dagster_defs/ → dagster_defs/,
    tests/<path>/ → connector/<path>/."""
    rel = test_dir.relative_to(root / "tests")
    if rel.parts[0] == "dagster_defs":
        return root.joinpath(*rel.parts)
    return root.joinpath("connector", *rel.parts)


def _mirrored_dirs(root: Path) -> list[Path]:
    """Every folder under tests/ that should mirror a package, at any depth."""
    tests = root / "tests"
    return [
        path
        for path in sorted(tests.rglob("*"))
        if path.is_dir() and not NOT_MIRRORED & set(path.relative_to(tests).parts)
    ]


def misnamed_test_files(root: Path) -> list[str]:
    """Test files outside tests/e2e/ whose name is no module (nor package) of their folder's."""
    wrong = []
    for folder in _mirrored_dirs(root):
        source = _source_dir(root, folder)
        for test in sorted(folder.glob("test_*.py")):
            name = test.stem.removeprefix("test_")
            module = source / f"{name}.py"
            if module.is_file() or name == source.name:  # a module, or the package itself
                continue
            wrong.append(
                f"{test.relative_to(root)} names no module: {module.relative_to(root)} does "
                "not exist. If the module was renamed or moved, move its test file with it "
                "(git mv) to tests/<package>/test_<module>.py; if the file runs a whole sync, "
                "CLI or Dagster flow across stages, move it to tests/e2e/."
            )
    return wrong


def unmirrored_folders(root: Path) -> list[str]:
    """Folders of tests/ that mirror no package folder, or lack their ``__init__.py``."""
    wrong = []
    for folder in _mirrored_dirs(root):
        source = _source_dir(root, folder)
        if not (source / "__init__.py").is_file():
            wrong.append(
                f"{folder.relative_to(root)}/ mirrors no package: {source.relative_to(root)}/ "
                "is not one. Move its tests to the folder of the package they test (or to "
                "tests/e2e/) and remove the folder."
            )
        elif not (folder / "__init__.py").is_file():
            wrong.append(
                f"{folder.relative_to(root)}/ has no __init__.py: add an empty one (tests is a "
                "package, and test modules of one name in two folders need it)."
            )
    e2e = root / "tests" / "e2e"
    for folder in [e2e, *sorted(p for p in e2e.rglob("*") if p.is_dir())] if e2e.is_dir() else []:
        if folder.name != "__pycache__" and not (folder / "__init__.py").is_file():
            wrong.append(f"{folder.relative_to(root)}/ has no __init__.py: add an empty one.")
    return wrong


def loose_test_files(root: Path) -> list[str]:
    """Test files at the top of tests/ other than the deliberate ones (``TOP_LEVEL``)."""
    loose = sorted(p.name for p in (root / "tests").glob("test_*.py") if p.name not in TOP_LEVEL)
    return [
        f"tests/{name} sits at the top of tests/: move it to tests/<package>/test_<module>.py "
        "for the module it tests (tests/dagster_defs/ for dagster_defs/), or to tests/e2e/ if "
        "it runs a whole sync, CLI or Dagster flow."
        for name in loose
    ]


def test_every_test_file_names_the_module_it_tests() -> None:
    problems = misnamed_test_files(ROOT)
    assert problems == [], "\n".join(problems)


def test_every_test_folder_mirrors_a_package_folder() -> None:
    problems = unmirrored_folders(ROOT)
    assert problems == [], "\n".join(problems)


def test_no_test_file_sits_at_the_top_of_tests() -> None:
    problems = loose_test_files(ROOT)
    assert problems == [], "\n".join(problems)


def test_the_guard_finds_a_renamed_module_a_stray_folder_and_a_loose_file(
    tmp_path: Path,
) -> None:
    (tmp_path / "connector" / "read").mkdir(parents=True)
    (tmp_path / "connector" / "read" / "__init__.py").write_text("")
    (tmp_path / "connector" / "read" / "source.py").write_text("")
    (tmp_path / "dagster_defs").mkdir()
    (tmp_path / "dagster_defs" / "__init__.py").write_text("")
    tests = tmp_path / "tests"
    for folder in ("read", "gone", "e2e", "dagster_defs"):
        (tests / folder).mkdir(parents=True)
        (tests / folder / "__init__.py").write_text("")
    for name in ("read/test_source.py", "read/test_read.py", "read/test_renamed.py"):
        (tests / name).write_text("")
    (tests / "dagster_defs" / "test_dagster_defs.py").write_text("")
    (tests / "dagster_defs" / "test_assets.py").write_text("")
    (tests / "e2e" / "test_any_scenario.py").write_text("")
    (tests / "test_loose.py").write_text("")
    (tests / "test_layout.py").write_text("")

    assert [p.split(" ")[0] for p in misnamed_test_files(tmp_path)] == [
        "tests/dagster_defs/test_assets.py",
        "tests/read/test_renamed.py",
    ]
    assert [p.split(" ")[0] for p in unmirrored_folders(tmp_path)] == ["tests/gone/"]
    assert [p.split(" ")[0] for p in loose_test_files(tmp_path)] == ["tests/test_loose.py"]


def test_worksteal_order_starts_each_workers_section_with_its_share_of_the_slow_tests() -> None:
    """The suite's order (tests/conftest.py): worksteal's first sections of 10 items over
    three workers are 3, 3 and 4 items long; each begins with slow ones, the report ends."""
    from tests.conftest import worksteal_order

    items = ["a", "S1", "b", "c", "S2", "report", "d", "S3", "e", "S4"]
    order = worksteal_order(
        items, 3, slow=lambda i: i.startswith("S"), last=lambda i: i == "report"
    )
    assert order == ["S1", "S4", "a", "S2", "b", "c", "S3", "d", "e", "report"]
    sections = [order[0:3], order[3:6], order[6:10]]
    assert [s[0] for s in sections] == ["S1", "S2", "S3"]
    assert sorted(order) == sorted(items)
    # One process (no xdist): the slow ones first, the report last.
    assert worksteal_order(
        items, 1, slow=lambda i: i.startswith("S"), last=lambda i: i == "report"
    ) == ["S1", "S2", "S3", "S4", "a", "b", "c", "d", "e", "report"]
