"""`oms audit ...` commands: work on a data folder while `oms serve` is stopped."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _cmd_verify(args: argparse.Namespace) -> int:
    from .verify import parse_anchor, verify
    try:
        anchors = dict(parse_anchor(a) for a in args.anchor or ())
    except ValueError as exc:
        print(f"oms audit verify: {exc}", file=sys.stderr)
        return 2
    missing = _no_journal(args.data_dir)
    if missing:   # a mistyped --data-dir must not read as "intact: 0 journal records"
        print(f"oms audit verify: {missing}", file=sys.stderr)
        return 2
    result = verify(Path(args.data_dir), anchors)
    if not result.ok and result.where == "duckdb" and result.first_bad_seq is None and _in_use(result.reason):
        # `oms serve` holds the DuckDB file: nothing was found broken, nothing could be checked
        print(f"oms audit verify: {_IN_USE_HINT}: {result.reason}", file=sys.stderr)
        return 2
    if result.ok:
        note = f" ({result.reason})" if result.reason else ""
        print(f"audit chain intact: {result.checked_journal} journal records, {result.checked_table} DuckDB rows{note}")
        return 0
    print(f"audit chain BROKEN in {result.where} at seq {result.first_bad_seq}: {result.reason}")
    return 1


def _cmd_rebuild(args: argparse.Namespace) -> int:
    from .paths import duckdb_path, journal_dir
    from .projection import Projection
    from .projector import projection_options
    import duckdb
    from .journal import JournalCorrupt
    from .verify import verify_journal
    missing = _no_journal(args.data_dir)
    if missing:
        print(f"oms audit: {missing}", file=sys.stderr)
        return 1
    if not args.force:
        # a rebuild replaces every DuckDB row with what the journal says: over a journal whose
        # chain is broken it would overwrite the rows that may still hold the original values
        checked = verify_journal(journal_dir(args.data_dir))
        if not checked.ok:
            print(f"oms audit: not rebuilt: the journal's hash chain is BROKEN at seq {checked.first_bad_seq} "
                  f"({checked.reason}); the DuckDB rows may be the only copy of the original values: keep "
                  f"{duckdb_path(args.data_dir)} aside as evidence, then `oms audit rebuild --force` rebuilds "
                  "from the journal as it is", file=sys.stderr)
            return 1
    projection = Projection(duckdb_path(args.data_dir), journal_dir(args.data_dir), **projection_options())
    try:
        rows = projection.rebuild()
    except duckdb.IOException as exc:
        projection.close()
        print(f"oms audit: {_cannot_open(duckdb_path(args.data_dir), exc)}", file=sys.stderr)
        return 1
    except JournalCorrupt as exc:     # a frame that fails its checksum: nothing past it can be read
        projection.close()
        print(f"oms audit: not rebuilt: {exc}", file=sys.stderr)
        return 1
    projection.stop()
    print(f"rebuilt {duckdb_path(args.data_dir)} from the journal: {rows} events")
    return 0


def _cmd_tail(args: argparse.Namespace) -> int:
    """Print the last N events of the DuckDB projection (catching up from the journal first)."""
    try:
        projection, con = _open(args.data_dir)     # the same checks and messages as the queries
    except _CliError as exc:
        print(f"oms audit: {exc}", file=sys.stderr)
        return 1
    try:
        rows = con.execute(
            "SELECT seq, ts, type, order_id, cl_ord_id, account, symbol, side, price, qty, ord_status, "
            "cum_qty, leaves_qty, last_px, last_qty, text FROM audit_events ORDER BY seq DESC LIMIT ?",
            [args.n]).fetchall()
        names = [d[0] for d in con.description]
    finally:
        con.close()
        projection.close()
    for row in reversed(rows):
        record = {k: v for k, v in zip(names, row) if v is not None}
        print(json.dumps(record) if args.json else "  ".join(f"{k}={v}" for k, v in record.items()))
    return 0


# -- read-side commands: catch the projection up from the journal, then query it ------------

EVENT_COLUMNS_SHOWN = ("seq", "time", "type", "order_id", "cl_ord_id", "orig_cl_ord_id", "account", "symbol",
                       "side", "price", "qty", "ord_status", "cum_qty", "leaves_qty", "last_px", "last_qty",
                       "rule", "limit_value", "actual_value", "text")


class _CliError(Exception):
    pass


_IN_USE_HINT = "it is in use (is `oms serve` running on this data dir? stop it, or query through its HTTP API)"


def _in_use(reason: str | None) -> bool:
    """DuckDB's message for a file another process holds (`oms serve`'s projection)."""
    text = (reason or "").lower()
    return "could not set lock" in text or "conflicting lock" in text


def _cannot_open(db: Path, exc: Exception) -> str:
    """Why the projection file ``db`` could not be opened: in use (the lock of another process)
    or not a DuckDB file this version opens (damaged, or another file at its name), which
    ``rebuild`` does not overwrite: the operator moves it aside (it may be evidence)."""
    if _in_use(str(exc)):
        return f"cannot open {db}: {_IN_USE_HINT}: {exc}"
    return (f"cannot open {db}: {exc} (not a DuckDB file this version can open: move it aside, then "
            f"`oms audit rebuild` makes the projection again from the journal)")


def _no_journal(data_dir: str) -> str | None:
    """Why DATA holds no journal to read (a mistyped --data-dir), or None."""
    from .paths import journal_dir
    jdir = journal_dir(data_dir)
    return None if jdir.is_dir() else f"no journal in {data_dir} (expected {jdir})"


def _open(data_dir: str):
    """(projection, cursor) on DATA/audit.duckdb, caught up with the journal first."""
    import duckdb
    from .paths import duckdb_path, journal_dir
    from .projection import Projection, ProjectionDiverged
    from .projector import projection_options
    missing = _no_journal(data_dir)
    if missing:
        raise _CliError(missing)
    projection = Projection(duckdb_path(data_dir), journal_dir(data_dir), **projection_options())
    try:
        projection.catch_up()
        return projection, projection.cursor()
    except duckdb.IOException as exc:
        projection.close()
        raise _CliError(_cannot_open(duckdb_path(data_dir), exc)) from None
    except ProjectionDiverged as exc:
        projection.close()
        raise _CliError(f"{exc} (oms audit verify --data-dir {data_dir}; oms audit rebuild ...)") from None


def _run_query(args, fn) -> int:
    from .queries import QueryError
    try:
        projection, con = _open(args.data_dir)
    except _CliError as exc:
        print(f"oms audit: {exc}", file=sys.stderr)
        return 1
    try:
        return fn(con)
    except QueryError as exc:
        print(f"oms audit: {exc}", file=sys.stderr)
        return 2
    finally:
        con.close()
        projection.close()


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, (dict, list)):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def print_table(rows: list[dict], columns=None, out=None) -> None:
    """Rows as an aligned text table; columns that are empty in every row are left out."""
    out = out or sys.stdout
    if not rows:
        print("(no rows)", file=out)
        return
    cols = list(columns) if columns else list(rows[0])
    cols = [c for c in cols if any(r.get(c) not in (None, "") for r in rows)]
    cells = [[_cell(r.get(c)) for c in cols] for r in rows]
    widths = [min(60, max(len(c), *(len(row[i]) for row in cells))) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip(), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for row in cells:
        print("  ".join((v if len(v) <= w else v[:w - 1] + "~").ljust(w) for v, w in zip(row, widths)).rstrip(),
              file=out)
    print(f"({len(rows)} rows)", file=out)


def _emit(rows, args, columns=EVENT_COLUMNS_SHOWN) -> None:
    if args.json:
        sys.stdout.write(json.dumps(rows, indent=None if getattr(args, "compact", False) else 1) + "\n")
    else:
        print_table(rows, columns)


def _cmd_lifecycle(args: argparse.Namespace) -> int:
    from .queries import lifecycle

    def fn(con):
        rows = lifecycle(con, order_id=args.order_id, cl_ord_id=args.cl_ord_id, session=args.session)
        _emit(rows, args)
        return 0 if rows else 3
    return _run_query(args, fn)


def _cmd_query(args: argparse.Namespace) -> int:
    from .queries import parse_ts, search

    def fn(con):
        rows = search(con, account=args.account, symbol=args.symbol, event=args.event,
                      ts_from=parse_ts(args.ts_from), ts_to=parse_ts(args.ts_to), cl_ord_id=args.cl_ord_id,
                      order_id=args.order_id, limit=args.limit, offset=args.offset)
        _emit(rows, args)
        return 0
    return _run_query(args, fn)


def _cmd_export(args: argparse.Namespace) -> int:
    from .queries import export, parse_ts

    def fn(con):
        n = export(con, args.format, Path(args.out), ts_from=parse_ts(args.ts_from), ts_to=parse_ts(args.ts_to))
        print(f"wrote {n} {'CAT events' if args.format == 'cat' else 'events'} to {args.out} ({args.format})")
        return 0
    return _run_query(args, fn)


def _load_baseline(config_path):
    from ..config import ConfigError, load_config
    from .queries import baseline_from_config
    try:
        return baseline_from_config(load_config(config_path))
    except ConfigError as exc:
        raise _CliError(f"bad configuration: {exc}") from None


def _cmd_limits(args: argparse.Namespace) -> int:
    from .queries import limits_at, parse_ts
    try:
        baseline = _load_baseline(args.config)
    except _CliError as exc:
        print(f"oms audit: {exc}", file=sys.stderr)
        return 2

    def fn(con):
        rows = limits_at(con, account=args.account, at=parse_ts(args.at), baseline=baseline)
        _emit(rows, args, ("limit", "value", "scope", "applies_to", "source", "set_by", "approver",
                           "set_at_time", "reason", "seq", "expires_ts"))
        return 0
    return _run_query(args, fn)


def _cmd_report_eod(args: argparse.Namespace) -> int:
    from .queries import eod_report

    def fn(con):
        text = eod_report(con, date=args.date, fmt=args.format)
        if args.out:
            Path(args.out).write_text(text, encoding="utf-8")
            print(f"wrote the end-of-day report ({args.format}) to {args.out}")
        else:
            sys.stdout.write(text)
        return 0
    return _run_query(args, fn)


def add_report_command(sub: argparse._SubParsersAction) -> None:
    """`oms report eod ...` (wired in oms_trading/cli.py)."""
    report = sub.add_parser("report", help="compliance reports from the audit trail")
    report_sub = report.add_subparsers(dest="report_command", required=True)
    eod = report_sub.add_parser("eod", help="end-of-day blotter, fills, positions and exceptions")
    eod.add_argument("--data-dir", default="./oms-data")
    eod.add_argument("--date", help="UTC trading date YYYY-MM-DD (default: the day of the last event)")
    eod.add_argument("--out", help="write to this file (default: stdout)")
    eod.add_argument("--format", choices=("csv", "html"), default="csv")
    eod.set_defaults(func=_cmd_report_eod)


def add_commands(sub: argparse._SubParsersAction) -> None:
    audit = sub.add_parser("audit", help="compliance: query, verify and rebuild the audit trail")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)

    verify = audit_sub.add_parser("verify", help="recompute the hash chain over journal and DuckDB")
    verify.add_argument("--data-dir", default="./oms-data")
    verify.add_argument("--anchor", action="append", metavar="SEQ:HASH",
                        help="a record the journal must still hold with that hash (the EOD report prints "
                             "the day's last): proves nothing up to it was cut or changed; repeatable")
    verify.set_defaults(func=_cmd_verify)

    rebuild = audit_sub.add_parser("rebuild", help="rebuild the DuckDB projection from the journal")
    rebuild.add_argument("--data-dir", default="./oms-data")
    rebuild.add_argument("--force", action="store_true",
                         help="rebuild even if the journal's hash chain is broken (checked first otherwise)")
    rebuild.set_defaults(func=_cmd_rebuild)

    tail = audit_sub.add_parser("tail", help="the last N audit events")
    tail.add_argument("--data-dir", default="./oms-data")
    tail.add_argument("-n", type=int, default=20)
    tail.add_argument("--json", action="store_true")
    tail.set_defaults(func=_cmd_tail)

    life = audit_sub.add_parser("lifecycle", help="every event of one order (any ClOrdID of its chain)")
    life.add_argument("--data-dir", default="./oms-data")
    which = life.add_mutually_exclusive_group(required=True)
    which.add_argument("--cl-ord-id")
    which.add_argument("--order-id", type=int)
    life.add_argument("--session", help='narrow a ClOrdID to one FIX session, e.g. "CLIENT1->OMS"')
    life.add_argument("--json", action="store_true")
    life.set_defaults(func=_cmd_lifecycle)

    query = audit_sub.add_parser("query", help="search events (times: ISO-8601 UTC or ns integers)")
    query.add_argument("--data-dir", default="./oms-data")
    query.add_argument("--account")
    query.add_argument("--symbol")
    query.add_argument("--event", help="type or comma list (aliases: rejects, fills, limits, kill_switch)")
    query.add_argument("--from", dest="ts_from", help="from this time (inclusive)")
    query.add_argument("--to", dest="ts_to", help="up to this time (exclusive)")
    query.add_argument("--cl-ord-id")
    query.add_argument("--order-id", type=int)
    query.add_argument("--limit", type=int, default=1000)
    query.add_argument("--offset", type=int, default=0)
    query.add_argument("--json", action="store_true")
    query.set_defaults(func=_cmd_query)

    exp = audit_sub.add_parser("export", help="export events as CSV, Parquet or CAT-style JSON lines")
    exp.add_argument("--data-dir", default="./oms-data")
    exp.add_argument("--format", choices=("csv", "parquet", "cat"), required=True)
    exp.add_argument("--out", required=True)
    exp.add_argument("--from", dest="ts_from")
    exp.add_argument("--to", dest="ts_to")
    exp.set_defaults(func=_cmd_export)

    lim = audit_sub.add_parser("limits", help="the limits in force for an account at a moment")
    lim.add_argument("--data-dir", default="./oms-data")
    lim.add_argument("--account", required=True)
    lim.add_argument("--at", help="the moment (default: now, after the last event)")
    lim.add_argument("--config", help="config file for the baseline (default: the built-in demo config)")
    lim.add_argument("--json", action="store_true")
    lim.set_defaults(func=_cmd_limits)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use: oms audit ...")
