"""What runs learned about a destination account: settings it confirmed (e.g. the Brevo batch
body shape, ``connector_account_settings``) and the property types Omnisend v4 froze per event
name (``connector_property_types``; the first type stored wins). ``account`` is
``ratelimit.account_key``: destination type, base URL and a hash of the key, never the key."""

from __future__ import annotations

import sqlalchemy as sa

from ..destinations.base import Learned
from .base import Tables, now
from .schema import account_settings, property_types


def store_learned(c: sa.Connection, account: str, learned: Learned) -> None:
    """Record account settings and the property types not yet known (first one wins:
    Omnisend v4 freezes a type on first send), inside the caller's transaction."""
    for name, value in learned.settings.items():
        write_setting(c, account, name, value)
    for event_name, types in learned.property_types.items():
        known = {
            p
            for (p,) in c.execute(
                sa.select(property_types.c.property).where(
                    property_types.c.account == account,
                    property_types.c.event_name == event_name,
                )
            )
        }
        new = [
            {"account": account, "event_name": event_name, "property": p, "type": t}
            for p, t in types.items()
            if p not in known
        ]
        if new:
            c.execute(property_types.insert(), new)


def write_setting(c: sa.Connection, account: str, name: str, value: str) -> None:
    """Set one account setting inside the caller's transaction."""
    where = (account_settings.c.account == account, account_settings.c.name == name)
    updated = c.execute(
        account_settings.update().where(*where).values(value=value, updated_at=now())
    ).rowcount
    if not updated:
        c.execute(
            account_settings.insert().values(
                account=account, name=name, value=value, updated_at=now()
            )
        )


class SettingsStore(Tables):
    """Learned account settings and property types."""

    def property_types(self, account: str, event_name: str) -> dict[str, str]:
        """Property name → type frozen for ``event_name`` on ``account`` (Omnisend v4), empty if
        none."""
        with self.engine.connect() as c:
            rows = c.execute(
                sa.select(property_types.c.property, property_types.c.type).where(
                    property_types.c.account == account, property_types.c.event_name == event_name
                )
            ).all()
        return {p: t for p, t in rows}

    def learn_property_types(self, account: str, event_name: str, types: dict[str, str]) -> None:
        """Record the types of properties not yet known for ``event_name`` (the first type stored
        wins)."""
        with self._tx() as c:
            store_learned(c, account, Learned(property_types={event_name: types}))

    def account_setting(self, account: str, name: str) -> str | None:
        """A setting a run confirmed for a destination account (no secret in ``account``)."""
        with self.engine.connect() as c:
            return c.execute(
                sa.select(account_settings.c.value).where(
                    account_settings.c.account == account, account_settings.c.name == name
                )
            ).scalar_one_or_none()

    def set_account_setting(self, account: str, name: str, value: str) -> None:
        """Store what a run confirmed about the account (e.g. the Brevo batch body shape)."""
        with self._tx() as c:
            write_setting(c, account, name, value)
