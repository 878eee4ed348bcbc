"""What Brevo's event endpoints share (``destinations.brevo.vendor``): property keys checked
at every depth."""

from __future__ import annotations

from connector.destinations.brevo.vendor import key_problem


def test_brevo_keys_are_checked_at_every_depth() -> None:
    assert key_problem({"ok": {"also_ok-1": [{"fine": 1}]}}) is None
    assert "'ok.bad key'" in (key_problem({"ok": {"bad key": 1}}) or "")
    assert "'a[0].b c'" in (key_problem({"a": [{"b c": 1}]}) or "")
