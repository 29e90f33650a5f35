"""`oms audit ...` commands: work on a data folder while `oms serve` is stopped."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _cmd_verify(args: argparse.Namespace) -> int:
    from .verify import verify
    result = verify(Path(args.data_dir))
    if result.ok:
        print(f"audit chain intact: {result.checked_journal} journal records, {result.checked_table} DuckDB rows")
        return 0
    print(f"audit chain BROKEN in {result.where} at seq {result.first_bad_seq}: {result.reason}")
    return 1


def _cmd_rebuild(args: argparse.Namespace) -> int:
    from .paths import duckdb_path, journal_dir
    from .projection import Projection
    projection = Projection(duckdb_path(args.data_dir), journal_dir(args.data_dir))
    rows = projection.rebuild()
    projection.stop()
    print(f"rebuilt {duckdb_path(args.data_dir)} from the journal: {rows} events")
    return 0


def _cmd_tail(args: argparse.Namespace) -> int:
    """Print the last N events of the DuckDB projection (catching up from the journal first)."""
    import duckdb
    from .paths import duckdb_path, journal_dir
    from .projection import Projection
    projection = Projection(duckdb_path(args.data_dir), journal_dir(args.data_dir))
    projection.catch_up()
    projection.stop()
    con = duckdb.connect(str(duckdb_path(args.data_dir)), read_only=True)
    try:
        rows = con.execute(
            "SELECT seq, ts, type, order_id, cl_ord_id, account, symbol, side, price, qty, ord_status, "
            "cum_qty, leaves_qty, last_px, last_qty, text FROM audit_events ORDER BY seq DESC LIMIT ?",
            [args.n]).fetchall()
        names = [d[0] for d in con.description]
    finally:
        con.close()
    for row in reversed(rows):
        record = {k: v for k, v in zip(names, row) if v is not None}
        print(json.dumps(record) if args.json else "  ".join(f"{k}={v}" for k, v in record.items()))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    audit = sub.add_parser("audit", help="compliance: query, verify and rebuild the audit trail")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)

    verify = audit_sub.add_parser("verify", help="recompute the hash chain over journal and DuckDB")
    verify.add_argument("--data-dir", default="./oms-data")
    verify.set_defaults(func=_cmd_verify)

    rebuild = audit_sub.add_parser("rebuild", help="rebuild the DuckDB projection from the journal")
    rebuild.add_argument("--data-dir", default="./oms-data")
    rebuild.set_defaults(func=_cmd_rebuild)

    tail = audit_sub.add_parser("tail", help="the last N audit events")
    tail.add_argument("--data-dir", default="./oms-data")
    tail.add_argument("-n", type=int, default=20)
    tail.add_argument("--json", action="store_true")
    tail.set_defaults(func=_cmd_tail)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use: oms audit ...")
