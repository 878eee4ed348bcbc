"""Where the connector reads and records (``dagster_defs.resources``): the resource and its
fields read as plain text in the launchpad."""

from __future__ import annotations

from dagster_defs import ConnectorResource


def test_the_launchpad_shows_plain_text_descriptions() -> None:
    resource = ConnectorResource.from_env().get_resource_definition()
    texts = [resource.description or ""]
    fields = resource.config_schema.as_field().config_type.fields  # type: ignore[attr-defined]
    texts += [f.description or "" for f in fields.values()]
    for text in texts:
        assert "``" not in text and ":class:" not in text and "\n" not in text, text
    assert (resource.description or "").startswith("Where the reverse-ETL syncs read rows")
