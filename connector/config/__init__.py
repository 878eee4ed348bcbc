"""Sync files: the pydantic models, YAML loading, ``${ENV}`` references and the JSON Schema
(``sync_file``), and the mapping checks that need the destination's class (``mapping_checks``)."""
