"""Benchmark of the extractor on a simulated source (not a test: prints figures).

    TDW_HOME=/tmp/tdw-bench .venv/bin/python bench/bench_extract.py [--scale 1000000] [--seed 42]

Creates (drops first) two databases on the embedded server of $TDW_HOME: ``bench_extract_source``
(filled by ``tdw.simulator.simulate`` at the given scale) and ``bench_extract_warehouse``, then
measures:

1. simulate: source rows written per second;
2. full extract (first run): rows per second, peak memory of the extracting process;
3. ``advance(days=1)`` then an incremental extract: seconds, rows read and upserted;
4. an idle incremental extract (nothing changed): seconds;
5. a ``--full`` extract over an already loaded warehouse (upserts + hard-delete detection).

Each extract runs in a child process so that its peak resident memory (ru_maxrss) is its own.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from pathlib import Path

import psycopg2

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from tdw import db  # noqa: E402
from tdw.config import load_settings  # noqa: E402
from tdw.extract import SOURCE_SCHEMA, extract  # noqa: E402


def _extract_child(source: str, warehouse: str, full: bool, queue) -> None:
    t0 = time.monotonic()
    report = extract(source, warehouse, full=full)
    queue.put(
        {
            "seconds": time.monotonic() - t0,
            "rows_read": report.rows_read,
            "rows_upserted": report.rows_upserted,
            "rows_deleted": sum(t.rows_deleted for t in report.tables),
            "tables": len(report.tables),
            "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "slowest": sorted(((t.duration_s, t.table, t.rows_read) for t in report.tables), reverse=True)[:3],
        }
    )


def run_extract(source: str, warehouse: str, *, full: bool = False) -> dict:
    """Run one extraction in a fresh child process; return its figures."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_extract_child, args=(source, warehouse, full, queue))
    proc.start()
    result = queue.get()
    proc.join()
    if proc.exitcode != 0:
        raise SystemExit(f"extract child failed with exit code {proc.exitcode}")
    return result


def source_rows(dsn: str) -> int:
    with contextlib.closing(psycopg2.connect(dsn)) as conn, conn.cursor() as cur:
        cur.execute(
            "select coalesce(sum(n_live_tup), 0) from pg_stat_user_tables where schemaname = %s", (SOURCE_SCHEMA,)
        )
        estimate = cur.fetchone()[0]
        cur.execute("select tablename from pg_tables where schemaname = %s", (SOURCE_SCHEMA,))
        total = 0
        for (table,) in cur.fetchall():
            cur.execute(f'select count(*) from "{SOURCE_SCHEMA}"."{table}"')
            total += cur.fetchone()[0]
        return total or int(estimate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=1_000_000, help="simulator scale (bordereaux); default 1,000,000")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    from tdw.simulator import advance, simulate

    settings = load_settings()
    base = db.embedded_base_uri(settings)
    dsns = {}
    for name in ("bench_extract_source", "bench_extract_warehouse"):
        with contextlib.closing(psycopg2.connect(base)) as conn:
            conn.autocommit = True
            conn.cursor().execute(f'drop database if exists "{name}" with (force)')
        db.ensure_database(base, name)
        dsns[name] = db._with_database(base, name)
    source, warehouse = dsns["bench_extract_source"], dsns["bench_extract_warehouse"]
    db.bootstrap_warehouse(warehouse, settings)
    out_dir = Path(tempfile.mkdtemp(prefix="bench_extract_"))

    rows = []
    print(f"scale {args.scale:,}, TDW_HOME {settings.home}", flush=True)
    t0 = time.monotonic()
    simulate(source, scale=args.scale, seed=args.seed, out_dir=out_dir)
    sim_s = time.monotonic() - t0
    n_source = source_rows(source)
    rows.append(("simulate", sim_s, n_source, n_source, "", ""))
    print(f"simulate done: {n_source:,} rows in {sim_s:.1f} s", flush=True)

    full = run_extract(source, warehouse)
    rows.append(("full extract (first run)", full["seconds"], full["rows_read"], full["rows_upserted"], f"{full['maxrss_mb']:.0f}", full["slowest"]))
    print("full extract done", flush=True)

    t0 = time.monotonic()
    adv = advance(source, days=1, out_dir=out_dir)
    adv_s = time.monotonic() - t0
    changed = sum(adv.get("inserted", {}).values()) + sum(adv.get("updated", {}).values())
    rows.append(("advance(days=1)", adv_s, changed, changed, "", ""))

    inc = run_extract(source, warehouse)
    rows.append(("incremental extract after advance", inc["seconds"], inc["rows_read"], inc["rows_upserted"], f"{inc['maxrss_mb']:.0f}", inc["slowest"]))
    idle = run_extract(source, warehouse)
    rows.append(("incremental extract, nothing changed", idle["seconds"], idle["rows_read"], idle["rows_upserted"], f"{idle['maxrss_mb']:.0f}", idle["slowest"]))
    again = run_extract(source, warehouse, full=True)
    rows.append(("--full extract over loaded raw", again["seconds"], again["rows_read"], again["rows_upserted"], f"{again['maxrss_mb']:.0f}", again["slowest"]))

    print()
    print(f"{'step':40} {'seconds':>9} {'rows':>12} {'rows/s':>10} {'changed':>10} {'peak MB':>8}")
    for step, seconds, n, changed_rows, mb, _ in rows:
        print(f"{step:40} {seconds:9.1f} {n:12,} {n / seconds if seconds else 0:10,.0f} {changed_rows:10,} {mb:>8}")
    print("\nslowest tables (seconds, table, rows read):")
    for step, *_, slowest in rows:
        if slowest:
            print(f"  {step}: " + "; ".join(f"{t} {s:.1f}s/{n:,}" for s, t, n in slowest))


if __name__ == "__main__":
    main()
