"""The hash chain: canonical encoding of a record and its SHA-256.

``hash = sha256(canonical_bytes(record))`` where the canonical bytes are the compact UTF-8 JSON
(orjson) of the record *without* ``hash``, *with* ``seq`` and ``prev_hash``, keys in the
record's own order and ``None`` values written as ``null``: exactly the bytes the journal
stores (its payload is those bytes with ``,"hash":"<hex>"`` spliced in before the closing
brace, i.e. ``orjson.dumps(record)``). The hash is therefore defined over the *stored bytes*:
``verify`` hashes the journal's payloads as they are and never re-encodes them; a record read
back with ``orjson.loads`` keeps its key order, so ``canonical_bytes`` of it gives the same
bytes again.

(Format history: before 2026-11-25 the journal wrote sorted keys and left ``None`` values out.
Such payloads are also "a record's JSON in its stored order", so old journals verify unchanged.)

A DuckDB row does not keep the key order or the ``null`` keys of its record, so a row's hash is
not recomputed from the row: ``verify`` checks each row against the journal record of the same
seq (every value, ``prev_hash`` and ``hash``), and the journal against its hashes.
"""
from __future__ import annotations

import hashlib
from typing import Any, Mapping

import orjson

GENESIS_HASH = "0" * 64
_dumps = orjson.dumps
_sha256 = hashlib.sha256


def canonical_bytes(record: Mapping[str, Any]) -> bytes:
    """Canonical encoding of ``record`` minus its ``hash`` key (key order kept, None as null)."""
    if "hash" in record:
        record = {k: v for k, v in record.items() if k != "hash"}
    return _dumps(record)


def record_hash(record: Mapping[str, Any], prev_hash: str | None = None) -> str:
    """Hex SHA-256 of ``record``'s canonical encoding.

    If ``prev_hash`` is given it is used as the record's ``prev_hash`` (overriding any value in
    ``record``, at its position; appended after the other keys if absent, as ``Journal.append``
    does); ``seq`` must already be in ``record``.
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
