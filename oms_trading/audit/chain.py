"""The hash chain: canonical encoding of a record and its SHA-256.

``hash = sha256(canonical_bytes(record))`` where the canonical bytes are the compact, sorted-key
UTF-8 JSON (orjson, ``OPT_SORT_KEYS``) of the record *without* ``hash`` and without ``None``
values, *with* ``seq`` and ``prev_hash``. Omitting ``None`` makes a DuckDB row (NULL columns)
re-encode to the same bytes as the journal record it came from.
"""
from __future__ import annotations

import hashlib
from typing import Any, Mapping

import orjson

GENESIS_HASH = "0" * 64
_OPT = orjson.OPT_SORT_KEYS
_dumps = orjson.dumps
_sha256 = hashlib.sha256


def canonical_bytes(record: Mapping[str, Any]) -> bytes:
    """Canonical encoding of ``record`` minus its ``hash`` key and its ``None`` values."""
    return _dumps({k: v for k, v in record.items() if v is not None and k != "hash"}, option=_OPT)


def record_hash(record: Mapping[str, Any], prev_hash: str | None = None) -> str:
    """Hex SHA-256 of ``record``'s canonical encoding.

    If ``prev_hash`` is given it is used as the record's ``prev_hash`` (overriding any value in
    ``record``); ``seq`` must already be in ``record``.
    """
    if prev_hash is not None:
        record = dict(record)
        record["prev_hash"] = prev_hash
    return _sha256(canonical_bytes(record)).hexdigest()


def check_record(record: Mapping[str, Any], expected_seq: int, expected_prev: str) -> str | None:
    """Why ``record`` does not continue the chain at ``expected_seq``/``expected_prev``; None if it does."""
    seq = record.get("seq")
    if seq != expected_seq:
        return f"seq {seq!r} where {expected_seq} was expected"
    if record.get("prev_hash") != expected_prev:
        return f"prev_hash {record.get('prev_hash')!r} does not link to the previous record's hash {expected_prev}"
    h = record_hash(record)
    if record.get("hash") != h:
        return f"hash {record.get('hash')!r} does not match the recomputed hash {h}"
    return None
