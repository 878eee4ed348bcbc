"""Benchmark: where the test suite's CPU goes, test by test (the suite is CPU-bound on two
cores: its wall time is about its CPU over two, so CPU is what to cut).

    PYTHONPATH=. .venv/bin/pytest -q -n auto --dist worksteal -p benchmarks.suite_cpu
    python benchmarks/suite_cpu.py [--top 40] [DIR]

As a pytest plugin it writes one line per test to ``DIR/<worker>.tsv`` (``DIR``:
``$SUITE_CPU_DIR``, default ``benchmarks/.suite_cpu``, emptied by the controlling process at
the start of the session): the test's id, the CPU of its process (all of its threads: the
sandbox serving it included), the CPU of the subprocesses it waited for (the ``connector``
command, Dagster's steps, ``dg``), its wall time and when it started and ended. The report sums
them per test, per test function over its parameters and per file, and shows each worker's
span and the tests still running in the last seconds (where workers end unevenly, the machine
has cores to spare and the run's wall time is longer than its CPU over two).

Not counted: collection, session fixtures, processes nobody waits for (the PostgreSQL and
MariaDB servers, the Snowflake cases that run beside the workers: time those alone with
``pytest tests/e2e/test_snowflake.py``). Compare with the machine's CPU over the run
(``/proc/stat``) to see how much that is.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

DEFAULT_DIR = Path(__file__).resolve().parent / ".suite_cpu"


def _out_dir() -> Path:
    return Path(os.environ.get("SUITE_CPU_DIR") or DEFAULT_DIR)


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def pytest_sessionstart(session: pytest.Session) -> None:
    """The controlling process (or a run without workers) starts from an empty directory."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        shutil.rmtree(_out_dir(), ignore_errors=True)
    _out_dir().mkdir(parents=True, exist_ok=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[Any]:
    """Setup, call and teardown of one test: its CPU and its reaped children's."""
    own, children, started = (
        _cpu(resource.RUSAGE_SELF),
        _cpu(resource.RUSAGE_CHILDREN),
        time.time(),
    )
    yield
    ended = time.time()
    line = (
        f"{item.nodeid}\t{_cpu(resource.RUSAGE_SELF) - own:.3f}\t"
        f"{_cpu(resource.RUSAGE_CHILDREN) - children:.3f}\t{ended - started:.3f}\t"
        f"{started:.3f}\t{ended:.3f}\n"
    )
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with (_out_dir() / f"{worker}.tsv").open("a") as out:
        out.write(line)


Row = tuple[
    str, float, float, float, float, float, str
]  # test, own, children, wall, start, end, worker


def _rows(where: Path) -> list[Row]:
    rows = []
    for path in sorted(where.glob("*.tsv")):
        for line in path.read_text().splitlines():
            test, own, children, wall, start, end = line.split("\t")
            rows.append(
                (
                    test,
                    float(own),
                    float(children),
                    float(wall),
                    float(start),
                    float(end),
                    path.stem,
                )
            )
    return rows


def _timeline(rows: list[Row], tail: float) -> None:
    """Each worker's span from the first test's start, and what ran in the last ``tail`` s."""
    t0 = min(r[4] for r in rows)
    t1 = max(r[5] for r in rows)
    print(f"\nby worker (s from the first test's start; the last test ended at {t1 - t0:.1f})")
    spans: dict[str, list[float]] = defaultdict(lambda: [float("inf"), 0.0, 0.0, 0.0])
    for _, own, children, wall, start, end, worker in rows:
        span = spans[worker]
        span[0], span[1] = min(span[0], start - t0), max(span[1], end - t0)
        span[2] += wall
        span[3] += own + children
    for worker, (first, last, busy, cpu) in sorted(spans.items()):
        print(f"  {worker}: {first:6.1f} to {last:6.1f}, in tests {busy:6.1f} s, CPU {cpu:6.1f} s")
    print(f"\nrunning in the last {tail:.0f} s")
    for test, own, children, _, start, end, worker in sorted(rows, key=lambda r: r[4]):
        if end > t1 - tail:
            print(
                f"  {worker} {start - t0:6.1f} to {end - t0:6.1f} CPU {own + children:6.2f}  {test}"
            )


def _table(title: str, sums: dict[str, list[float]], top: int) -> None:
    print(f"\n{title}\n{'CPU s':>8} {'own':>7} {'children':>8} {'wall s':>7} {'tests':>5}  name")
    ranked = sorted(sums.items(), key=lambda kv: -(kv[1][0] + kv[1][1]))
    for name, (own, children, wall, n) in ranked[:top]:
        print(f"{own + children:8.2f} {own:7.2f} {children:8.2f} {wall:7.1f} {int(n):5d}  {name}")


def main(argv: list[str] | None = None) -> int:
    """Print the per-test, per-function and per-file CPU of the last instrumented run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", nargs="?", type=Path, default=_out_dir())
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--tail", type=float, default=30.0, help="seconds at the end to list")
    args = parser.parse_args(argv)
    rows = _rows(args.dir)
    if not rows:
        print(f"no results in {args.dir}: run pytest with -p benchmarks.suite_cpu first")
        return 1
    groups: dict[str, dict[str, list[float]]] = {
        "test": defaultdict(lambda: [0.0] * 4),
        "function": defaultdict(lambda: [0.0] * 4),
        "file": defaultdict(lambda: [0.0] * 4),
    }
    for test, own, children, wall, *_ in rows:
        keys = {"test": test, "function": test.split("[")[0], "file": test.split("::")[0]}
        for group, key in keys.items():
            acc = groups[group][key]
            acc[0] += own
            acc[1] += children
            acc[2] += wall
            acc[3] += 1
    own_sum = sum(r[1] for r in rows)
    children_sum = sum(r[2] for r in rows)
    print(
        f"{len(rows)} tests: {own_sum + children_sum:.1f} CPU s "
        f"({own_sum:.1f} in the test processes, {children_sum:.1f} in their subprocesses)"
    )
    for group in ("file", "function", "test"):
        _table(f"by {group}", groups[group], args.top)
    _timeline(rows, args.tail)
    return 0


if __name__ == "__main__":
    sys.exit(main())
