"""Projection catch-up of two code trees, alternating on the same journal (before/after).

Each run is a fresh process importing one tree: ``Projection.catch_up`` with the projection
process's options (``projector.projection_options``: bulk mode on every core, prefetch, ART
indexes built at the end) into a new DuckDB file, from a journal of the bench's events. The
trees alternate (A B B A A B ...) so that this VM's drifts in speed fall on both; medians.

    git worktree add /tmp/old <commit>
    python -m benchmarks.ab_catch_up --tree old=/tmp/old --tree new=. --events 1200000 --reps 4

Prints one JSON line per run and a summary (events/s, CPU us per event, file size).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

_CHILD = r'''
import json, os, sys, time
from pathlib import Path
from oms_trading.audit import ingest
from oms_trading.audit.projection import Projection
from oms_trading.audit.projector import projection_options
ingest.warm()
db = Path(sys.argv[2])
p = Projection(db, sys.argv[1], **projection_options())
w, c = time.perf_counter(), time.process_time()
n = p.catch_up()
p.close()
wall, cpu = time.perf_counter() - w, time.process_time() - c
print(json.dumps({"events": n, "events_per_s": round(n / wall), "cpu_us_per_event": round(cpu / n * 1e6, 2),
                  "file_mb": os.path.getsize(db) >> 20}))
'''


def run_once(tree: Path, jdir: Path, db: Path) -> dict:
    for f in (db, Path(str(db) + ".wal")):
        f.unlink(missing_ok=True)
    out = subprocess.run([sys.executable, "-c", _CHILD, str(jdir), str(db)], capture_output=True, text=True,
                         cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)})
    if out.returncode:
        raise RuntimeError(f"{tree}: catch-up failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tree", action="append", required=True, metavar="NAME=DIR",
                    help="a code tree to run (two or more)")
    ap.add_argument("--events", type=int, default=1_200_000, help="journal size when --journal is not given")
    ap.add_argument("--journal", default=None, help="an existing journal directory to read")
    ap.add_argument("--reps", type=int, default=4, help="runs of each tree")
    a = ap.parse_args(argv)
    trees = dict(t.split("=", 1) for t in a.tree)
    if len(trees) < 2:
        ap.error("give at least two --tree NAME=DIR")
    work = Path(tempfile.mkdtemp(prefix="ab-catch-up-"))
    try:
        jdir = Path(a.journal) if a.journal else work / "journal"
        if not a.journal:
            from benchmarks.bench_audit import bench_journal
            bench_journal(jdir, a.events, 10, "os")
        names = list(trees)
        res: dict[str, list[dict]] = {n: [] for n in names}
        for r in range(a.reps):
            for name in (names if r % 2 == 0 else names[::-1]):
                got = run_once(Path(trees[name]).resolve(), jdir, work / "ab.duckdb")
                res[name].append(got)
                print(json.dumps({"tree": name, **got}), flush=True)
        summary = {n: {"events_per_s_median": statistics.median(x["events_per_s"] for x in v),
                       "events_per_s_range": [min(x["events_per_s"] for x in v), max(x["events_per_s"] for x in v)],
                       "cpu_us_per_event_median": statistics.median(x["cpu_us_per_event"] for x in v),
                       "file_mb": v[0]["file_mb"]} for n, v in res.items()}
        print(json.dumps({"summary": summary}, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
