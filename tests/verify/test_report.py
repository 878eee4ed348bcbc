"""What ``connector verify`` found (``verify.report``): a sent value and the value read back
compared field by field."""

from __future__ import annotations

from typing import Any

import pytest

from connector.verify.report import same


@pytest.mark.parametrize(
    ("sent", "found", "equal"),
    [
        (9.1, 9.10, True),
        (9, 9.0, True),
        ("A@Example.com", "a@example.com", True),
        ("+33610000003", ["+33610000003"], True),
        ("2026-11-01T00:00:00Z", "2026-11-01T00:00:00+00:00", True),
        ("pro", "free", False),
        (True, 1, False),
        ("9.1", 9.1, False),
    ],
)
def test_field_comparison(sent: Any, found: Any, equal: bool) -> None:
    name = "email" if isinstance(sent, str) and "@" in sent else "x"
    assert same(name, sent, found) is equal
