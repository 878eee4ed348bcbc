"""Sync files: the pydantic models, YAML loading, ``${ENV}`` references and the JSON Schema
(``sync_file``)."""
