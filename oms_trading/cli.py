"""The `oms` command: serve, init, bench, audit, report, token."""
from __future__ import annotations

import argparse
import hashlib
import logging
import sys
from pathlib import Path

from .config import ConfigError, demo_config_text, load_config


def _cmd_serve(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"oms serve: bad configuration: {exc}", file=sys.stderr)
        return 2
    from .audit.journal import JournalError
    from .server import ServeOptions, serve
    options = ServeOptions(
        data_dir=Path(args.data_dir) if args.data_dir else config.data_dir,
        host=args.host or config.host,
        fix_port=config.fix_port if args.fix_port is None else args.fix_port,
        http_port=config.http_port if args.http_port is None else args.http_port,
        book=args.book,
    )
    try:
        return serve(config, options)
    except (OSError, JournalError) as exc:   # a port in use, the data dir, a journal in use or damaged
        print(f"oms serve: {exc}", file=sys.stderr)
        return 1


def _port(text: str) -> int:
    """A TCP port for --fix-port/--http-port: out of range is an error (the socket layer
    would take 70000 as 70000 % 65536 and listen somewhere else)."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port 0..65535, got {text!r}")
    return port


def _cmd_init(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if path.exists() and not args.force:
        print(f"oms init: {path} exists (use --force to overwrite)", file=sys.stderr)
        return 1
    path.write_text(demo_config_text(), encoding="utf-8")
    print(f"wrote {path}: edit it, then run `oms serve --config {path}`")
    return 0


def _cmd_token(args: argparse.Namespace) -> int:
    print(hashlib.sha256(args.secret.encode()).hexdigest())
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    import importlib
    module = importlib.import_module(f"benchmarks.bench_{args.what}")
    return int(module.main(args.rest) or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oms", description="oms_trading: a low-latency order management system")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the OMS (FIX acceptor, engine, HTTP API)")
    serve.add_argument("--config", help="TOML config file (default: the built-in demo config)")
    serve.add_argument("--data-dir", help="journal, FIX store and DuckDB folder (default ./oms-data)")
    serve.add_argument("--host", help="listen address (default 127.0.0.1)")
    serve.add_argument("--fix-port", type=_port, help="FIX port (default 9878; 0 picks a free one)")
    serve.add_argument("--http-port", type=_port, help="HTTP port (default 8080; 0 picks a free one)")
    serve.add_argument("--book", choices=("numba", "reference"), default="numba",
                       help="order book implementation (default numba)")
    serve.set_defaults(func=_cmd_serve)

    init = sub.add_parser("init", help="write the demo config as a commented file to edit")
    init.add_argument("path", nargs="?", default="oms.toml")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.set_defaults(func=_cmd_init)

    token = sub.add_parser("token", help="print the sha256 of a secret, for http.users token_sha256")
    token.add_argument("secret")
    token.set_defaults(func=_cmd_token)

    bench = sub.add_parser("bench", help="benchmarks: book, codec, audit, engine, fix, all")
    bench.add_argument("what", choices=("book", "codec", "audit", "engine", "fix", "all"))
    bench.add_argument("rest", nargs=argparse.REMAINDER, help="options of that benchmark (see --help)")
    bench.set_defaults(func=_cmd_bench)

    from .audit import cli as audit_cli
    audit_cli.add_commands(sub)
    audit_cli.add_report_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from . import configure_logging
    configure_logging(logging.DEBUG if args.verbose else logging.INFO, sys.stderr)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:   # Ctrl-C before `oms serve` installs its own SIGINT handler: nothing started
        print(f"oms {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
