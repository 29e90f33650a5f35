"""Where the audit trail lives inside a data directory."""
from __future__ import annotations

from pathlib import Path

JOURNAL_SUBDIR = "journal"
DUCKDB_FILE = "audit.duckdb"


def journal_dir(data_dir: Path | str) -> Path:
    """The journal (source of truth): ``DATA/journal/``."""
    return Path(data_dir) / JOURNAL_SUBDIR


def duckdb_path(data_dir: Path | str) -> Path:
    """The DuckDB query projection: ``DATA/audit.duckdb``."""
    return Path(data_dir) / DUCKDB_FILE
