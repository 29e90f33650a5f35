"""Immutable audit trail.

- ``schema``: the event contract (columns of the DuckDB table, event types).
- ``chain``: canonical encoding and SHA-256 hash chain (``canonical_bytes``, ``record_hash``): the
  hash is over the record's JSON exactly as the journal stores it (key order kept, None as null).
- ``journal``: the append-only journal, the source of truth (``Journal``, ``iter_records``).
- ``projection``: DuckDB query projection of the journal (``Projection``, ``connect_readonly``); at
  run time fed the payloads the journal flushed (``Journal.tap``, parsed by Arrow's C++ JSON
  reader with the GIL released) or the record dicts (``Projection.feed``), from the journal files
  at start-up and after a gap.
- ``verify``: recomputes the chain over the journal and the table (``verify``).
- ``queries``: the read side for compliance and the HTTP API (``lifecycle``, ``search``, ``export``
  (CSV/Parquet/CAT-style JSON lines), ``limits_at``, ``eod_report``; ``parse_ts``, ``iso_ns``).
- ``paths``: ``journal_dir(data_dir)``, ``duckdb_path(data_dir)``.

Submodules are imported explicitly (``from oms_trading.audit.journal import Journal``) so that the
engine does not pay for importing DuckDB.
"""
