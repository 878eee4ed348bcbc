"""``${ENV}`` references in sync files: where they are allowed, which stay unresolved until a run
needs them (secrets), and how they resolve."""

from __future__ import annotations

import os
import re
from typing import Any

from ..core.errors import ConfigError

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# Fields that may hold secrets: kept as ${ENV} references until a run resolves them.
_LAZY_FIELDS = {("destination", "api_key"), ("source", "url")}
# Every value under these is lazy too (passwords, key passphrases for the warehouse driver).
_LAZY_BLOCKS = {("source", "connect_args")}
# The only fields where ${ENV} references are allowed (documented): anywhere else a reference
# would copy any environment variable into names or payloads sent to a vendor.
_ENV_FIELDS = {*_LAZY_FIELDS, ("destination", "base_url")}
_ENV_FIELDS_TEXT = (
    "destination.api_key, destination.base_url, source.url and the values of source.connect_args"
)


def resolve_env(value: str, where: str) -> str:
    """Substitute ``${VAR}`` / ``${VAR:-default}`` references; missing variables are errors."""
    missing: list[str] = []

    def sub(match: re.Match[str]) -> str:
        var, default = match.group(1), match.group(2)
        if var in os.environ:
            return os.environ[var]
        if default is not None:
            return default
        missing.append(var)
        return ""

    out = _ENV_REF.sub(sub, value)
    if missing:
        names = ", ".join(missing)
        raise ConfigError(
            f"{where}: environment variable {names} is not set; "
            f"export it (or write ${{{missing[0]}:-default}})"
        )
    return out


def _in_lazy_block(path: tuple[str, ...]) -> bool:
    return any(path[: len(block)] == block for block in _LAZY_BLOCKS)


def resolve_tree(node: Any, where: str) -> Any:
    """``resolve_env`` on every string of a nested value (``source.connect_args``)."""
    if isinstance(node, dict):
        return {k: resolve_tree(v, f"{where}.{k}") for k, v in node.items()}
    if isinstance(node, list):
        return [resolve_tree(v, f"{where}.{i}") for i, v in enumerate(node)]
    if isinstance(node, str) and "${" in node:
        return resolve_env(node, where)
    return node


def interpolate(node: Any, path: tuple[str, ...], where: str, problems: list[str]) -> Any:
    """Resolve the ``${ENV}`` references of a parsed sync file, except in lazy fields (secrets),
    collecting one problem per reference that is misplaced or unset."""
    if _in_lazy_block(path):
        return node  # resolved when a run connects (resolve_tree); checked by check_env_refs
    if isinstance(node, dict):
        return {k: interpolate(v, (*path, str(k)), where, problems) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate(v, (*path, str(i)), where, problems) for i, v in enumerate(node)]
    if isinstance(node, str) and path not in _ENV_FIELDS and _ENV_REF.search(node):
        problems.append(
            f"{where}: {'.'.join(path)}: environment references (${{...}}) are allowed only in "
            f"{_ENV_FIELDS_TEXT}; write the value itself"
        )
        return node
    if isinstance(node, str) and "${" in node and path not in _LAZY_FIELDS:
        try:
            return resolve_env(node, f"{where}: {'.'.join(path)}")
        except ConfigError as exc:
            problems.extend(exc.problems)
    return node


def check_env_refs(raw: dict[str, Any], where: str, problems: list[str]) -> None:
    """Check that the variables the lazy fields name are set (resolved later, by the run)."""
    for path in _LAZY_FIELDS:
        node: Any = raw
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, str):
            try:
                value = resolve_env(node, f"{where}: {'.'.join(path)}")
            except ConfigError as exc:
                problems.extend(exc.problems)
                continue
            if not value.strip():
                names = ", ".join(m.group(1) for m in _ENV_REF.finditer(node)) or "it"
                problems.append(
                    f"{where}: {'.'.join(path)}: environment variable {names} is empty; set it "
                    "to the value (an empty key or URL cannot work)"
                )
    for block in _LAZY_BLOCKS:
        node = raw
        for part in block:
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            try:
                resolve_tree(node, f"{where}: {'.'.join(block)}")
            except ConfigError as exc:
                problems.extend(exc.problems)
