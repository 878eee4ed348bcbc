"""The Snowflake warehouse, end to end: every warehouse-parametrized case (values, ties at the
checkpoint, NULL cursor/key rows, kill -9 and resume, contact diffs, Dagster assets) and
Snowflake's own (tests/warehouses/test_snowflake.py), run against fakesnow in the Snowflake
environment (.venv-snowflake: snowflake-sqlalchemy 1.x needs SQLAlchemy < 2.1, fakesnow needs
snowflake-connector-python < 5). Their results are reported here, case by case."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from tests.conftest import SNOWFLAKE_PYTHON, SnowflakeRun


def test_the_snowflake_cases_pass_in_their_environment(snowflake_run: SnowflakeRun) -> None:
    assert snowflake_run.available, (
        f"{SNOWFLAKE_PYTHON} is missing: build the Snowflake test environment with "
        "bash .ci/snowflake-env (.ci/run does)"
    )
    code = snowflake_run.wait(timeout=1800)
    output = snowflake_run.log.read_text(errors="replace")
    assert snowflake_run.junit.exists(), output[-4000:]
    cases = list(ET.parse(snowflake_run.junit).getroot().iter("testcase"))
    failed = [
        f"{case.get('classname')}::{case.get('name')}: "
        + (problem.get("message") or problem.text or "")[:500]
        for case in cases
        for problem in case
        if problem.tag in ("failure", "error")
    ]
    skipped = [case.get("name") for case in cases if case.find("skipped") is not None]
    assert failed == [], "\n".join(failed)
    assert skipped == []
    assert code == 0, output[-4000:]
    # As many as the selected tests promise (each warehouse test once more, Snowflake's own):
    # a collection problem in their environment must not pass as success.
    expected = int(snowflake_run.expected.read_text())
    assert len(cases) >= expected, (
        f"only {len(cases)} Snowflake cases ran, {expected} expected:\n{output[-2000:]}"
    )
