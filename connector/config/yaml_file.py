"""Reading a sync file's YAML safely: size and alias-expansion limits, dates kept as text."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml
from typing_extensions import override

from ..core.errors import ConfigError

# A sync file is a few KB; the limits keep one bad file from taking the CLI or the Dagster code
# location down (a 271-byte alias bomb expands to millions of nodes).
MAX_SYNC_FILE_BYTES = 256 * 1024
MAX_YAML_NODES = 100_000


class SyncFileLoader(yaml.SafeLoader):
    """Safe YAML that notes a key written twice in one mapping (plain YAML keeps the last
    value and silently drops the first: a mapped property would vanish)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[str] = []

    @override
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, (str, int, float, bool, date)) and key in seen:
                self.duplicates.append(
                    f"key {key!r} is written twice in one mapping (lines {seen[key]} and "
                    f"{line}); YAML would keep only the last: remove one"
                )
            elif isinstance(key, (str, int, float, bool, date)):
                seen[key] = line
        return super().construct_mapping(node, deep)


def dates_as_text(node: Any) -> Any:
    """YAML reads a bare 2026-07-15 as a date; every field taking one takes its ISO text
    (``options: {revision: 2026-07-15}`` unquoted, as the docs write it)."""
    if isinstance(node, dict):
        return {dates_as_text(k): dates_as_text(v) for k, v in node.items()}
    if isinstance(node, list):
        return [dates_as_text(v) for v in node]
    if isinstance(node, date) and not isinstance(node, datetime):
        return node.isoformat()
    return node


def load_yaml(text: str, where: str, yl: yaml.SafeLoader) -> Any:
    """``yaml.safe_load`` with a size limit and a bound on alias expansion.

    The node graph is composed first (aliases share nodes, so that is cheap) and its expanded
    size counted before anything is built: a file that expands past ``MAX_YAML_NODES`` nodes,
    or aliases itself, is refused instead of being expanded by the checks that walk it.
    """
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_SYNC_FILE_BYTES:
        raise ConfigError(
            f"{where}: file is {size:,} bytes; sync files are limited to "
            f"{MAX_SYNC_FILE_BYTES:,} bytes"
        )
    try:
        node = yl.get_single_node()
        if node is None:
            return None
        _expanded_size(node, {}, set(), where)
        return yl.construct_document(node)
    except RecursionError:  # the composer and the walk recurse once per nesting level
        raise ConfigError(
            f"{where}: YAML nested too deeply; a sync file needs a few levels"
        ) from None


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_: set[int], where: str) -> int:
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_:
        raise ConfigError(f"{where}: a YAML alias refers to itself; remove the recursive alias")
    open_.add(key)
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(n, sizes, open_, where) for n in node.value)
    elif isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            size += _expanded_size(k, sizes, open_, where) + _expanded_size(v, sizes, open_, where)
    open_.discard(key)
    if size > MAX_YAML_NODES:
        raise ConfigError(
            f"{where}: YAML aliases expand to more than {MAX_YAML_NODES:,} values; "
            "write the values out or use fewer aliases"
        )
    sizes[key] = size
    return size


def read_sync_file(path: Path, where: str) -> str:
    """A sync file's text; an oversized or unreadable file is a config error naming it."""
    try:
        if not path.is_file():  # a FIFO would block the read forever
            raise ConfigError(f"{where}: not a regular file; sync files are plain YAML files")
        size = path.stat().st_size
        if size > MAX_SYNC_FILE_BYTES:
            raise ConfigError(
                f"{where}: file is {size:,} bytes; sync files are limited to "
                f"{MAX_SYNC_FILE_BYTES:,} bytes"
            )
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: cannot read the file: {exc}") from None
