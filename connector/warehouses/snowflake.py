"""Snowflake through snowflake-sqlalchemy and snowflake-connector-python (the ``snowflake`` extra).

- Connecting: ``host``, ``port`` and ``protocol`` written in the URL's query string are handed
  to the driver as connect arguments (snowflake-sqlalchemy 2 refuses them in the URL, 1.11 only
  behind a legacy switch), so one URL works with both. Key-pair auth: ``connect_args:
  {private_key_file: /path/rsa_key.p8, private_key_file_pwd: ${PASSPHRASE}}``, or the key's
  PEM text in ``private_key`` (``${SNOWFLAKE_PRIVATE_KEY}``), which is converted to what the
  driver takes. Sessions run in UTC (``TIMEZONE``), which only changes how LTZ values print.
- Names: unquoted identifiers fold to upper case; the cursor reports columns as stored, and
  every column is addressed quoted by that stored name, so ``id``, ``ID`` and a quoted
  ``"MixedCase"`` all work in a mapping.
- Types: ``NUMBER(p,0)`` is an integer, ``NUMBER(p,s)`` an exact decimal, ``TIMESTAMP_TZ`` and
  ``_LTZ`` instants, ``TIMESTAMP_NTZ`` a wall-clock time, ``VARIANT``/``OBJECT``/``ARRAY`` JSON.
- Reading: the driver's Arrow batches (no Python object per value).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import sqlalchemy as sa

from ..core.errors import ConfigError
from ..model.events import Chunk
from .base import Warehouse, rows_to_chunk

if TYPE_CHECKING:
    import pyarrow as pa
else:
    from ..core.lazy import pa


# snowflake.connector.constants.FIELD_TYPES, by type code.
_KINDS = {
    1: "float",  # REAL
    2: "string",  # TEXT
    3: "date",
    4: "timestamp",  # TIMESTAMP: NTZ under the default TIMESTAMP_TYPE_MAPPING
    5: "json",  # VARIANT
    6: "timestamptz",  # TIMESTAMP_LTZ
    7: "timestamptz",  # TIMESTAMP_TZ
    8: "timestamp",  # TIMESTAMP_NTZ
    9: "json",  # OBJECT
    10: "json",  # ARRAY
    13: "boolean",
}
_FIXED = 0
# Connection parameters the dialect refuses in the URL's query string but a URL may carry.
_MOVED = ("host", "port", "protocol")


class Snowflake(Warehouse):
    """Snowflake."""

    name = "snowflake"
    audit_indexes = False  # no indexes on standard tables
    backends = frozenset({"snowflake"})
    dagster_kind = "snowflake"
    extra = "snowflake"
    drivers: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "": ("snowflake.sqlalchemy", "snowflake.connector")
    }
    key_order = True
    folds_case = True

    def connect_args(self, url: sa.URL, args: dict[str, Any]) -> tuple[sa.URL, dict[str, Any]]:
        """Moved URL parameters, a PEM private key as DER, the session in UTC."""
        for name in _MOVED:
            if name in url.query:
                value = url.query[name]
                text = value if isinstance(value, str) else value[-1]
                args.setdefault(name, int(text) if name == "port" and text.isdigit() else text)
        url = url.difference_update_query(_MOVED)
        key = args.get("private_key")
        if isinstance(key, str) and key.lstrip().startswith("-----BEGIN"):
            args["private_key"] = _der(key, args.pop("private_key_pwd", None))
        args["session_parameters"] = {"TIMEZONE": "UTC", **args.get("session_parameters", {})}
        return url, args

    def quote(self, preparer: Any, name: str) -> str:
        """Always quoted: ``name`` is the column as stored (upper case when it was unquoted)."""
        return str(preparer.quote_identifier(name))

    def kind(self, column: Sequence[Any]) -> str:
        """By type code; NUMBER by its scale."""
        code = column[1]
        if code == _FIXED:
            scale = column[5]
            return "integer" if not scale else "number"
        return _KINDS.get(code, "other") if isinstance(code, int) else "other"

    def bytewise(self, expr: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """No collation (a column may declare one): Unicode code point order, which is the
        order of the UTF-8 bytes."""
        return sa.func.collate(expr, sa.literal_column("''"))

    def period(self, expr: sa.ColumnElement[Any], kind: str, unit: str) -> sa.ColumnElement[Any]:
        """``DATE_TRUNC``; an instant first converted to UTC (``CONVERT_TIMEZONE``)."""
        if kind == "timestamptz":
            utc = sa.func.convert_timezone(sa.literal_column("'UTC'"), expr)
            return sa.func.date_trunc(sa.literal_column(f"'{unit}'"), utc)
        return super().period(expr, kind, unit)

    def read(self, conn: sa.Connection, stmt: sa.Select[Any], kinds: Sequence[str]) -> Chunk:
        """The driver's Arrow batches."""
        result = conn.execute(stmt)
        names = list(result.keys())
        cursor: Any = result.cursor
        batches = [b for b in cursor.fetch_arrow_batches() if b.num_rows]
        result.close()
        if not batches:
            return rows_to_chunk(names, [() for _ in names], kinds, _empty)
        table = pa.concat_tables(batches).rename_columns(names)
        json_cols = frozenset(n for n, k in zip(names, kinds, strict=False) if k == "json")
        return Chunk(table, json_cols)


def _empty(values: Sequence[Any], kind: str) -> tuple[pa.Array, bool]:
    return pa.array([], pa.null()), kind == "json"


def _der(pem: str, passphrase: str | None) -> bytes:
    """A PEM private key (PKCS#8, encrypted or not) as the DER bytes the driver takes."""
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_private_key(
            pem.encode(), password=passphrase.encode() if passphrase else None
        )
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            "source.connect_args.private_key: not a readable PEM private key "
            f"({str(exc).splitlines()[0][:120]}); give the key's PEM text, and its passphrase "
            "in private_key_pwd, or use private_key_file"
        ) from None
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


WAREHOUSE = Snowflake()
