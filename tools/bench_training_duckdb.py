"""DuckDB's ASOF JOIN over featstore's history export, timed, against featstore's own
training set (tools/bench-training.sh runs it after featstore-bench-training).

Reads the JSON report of featstore-bench-training on stdin, builds the same training
set with one ASOF LEFT JOIN per feature over the exported Parquet (value, event time
and a status per feature, written to Parquet as featstore does), checks every value
against featstore's file, and prints both throughputs and their ratio.

The benchmark's data has no two candidate values of a key with one event time (batch
changes and pushes never share a timestamp; each push has its own millisecond), so the
ASOF JOIN's pick needs no tie-break; on data with ties it would need the export's
(source, batch_version, known_at) order (docs/history-export.md).
"""

from __future__ import annotations

import json
import resource
import sys
import time

import duckdb


def main() -> int:
    report = json.load(sys.stdin)
    key = report["entity_column"]
    export = report["export"]
    names = report["feature_names"]
    out = report["featstore_out"].replace("featstore-train", "duckdb-train")
    con = duckdb.connect()
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    selects, joins = [], []
    for i, n in enumerate(names):
        path = f"{export}/group=matrix/feature={n}/version=1/*.parquet"
        joins.append(
            f"ASOF LEFT JOIN (SELECT entity_id, epoch_ms(event_time) AS t, value "
            f"FROM read_parquet('{path}')) j{i} "
            f"ON s.{key} = j{i}.entity_id AND s.event_timestamp >= j{i}.t"
        )
        selects.append(
            f"j{i}.value AS {n}, "
            f"CASE WHEN j{i}.t IS NULL THEN 'not_found' ELSE 'present' END AS {n}__status, "
            f"j{i}.t AS {n}__event_time"
        )
    query = (
        f"COPY (SELECT s.*, {', '.join(selects)} FROM read_parquet('{report['spine']}') s "
        f"{' '.join(joins)}) TO '{out}' (FORMAT parquet)"
    )
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    con.execute(query)
    secs = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    values = report["spine_rows"] * len(names)
    # Every value and event time equal to featstore's, row by row (by label).
    diff = " OR ".join(
        f"a.{n} IS DISTINCT FROM b.{n} OR a.{n}__event_time IS DISTINCT FROM b.{n}__event_time"
        for n in names
    )
    mismatched, rows = con.execute(
        f"SELECT count(*) FILTER (WHERE {diff}), count(*) FROM read_parquet('{out}') a "
        f"JOIN read_parquet('{report['featstore_out']}') b USING (label)"
    ).fetchone()
    fs = report["featstore_values_per_sec"]
    dd = values / secs
    print(
        json.dumps(
            {
                "spine_rows": report["spine_rows"],
                "features": len(names),
                "days": report["days"],
                "entities": report["entities"],
                "export_rows": report["export_rows"],
                "featstore_threads": report.get("featstore_threads", 0),
                "featstore_secs": round(report["featstore_train_secs"], 2),
                "featstore_cpu_secs": round(report["featstore_train_cpu_secs"], 2),
                "featstore_values_per_sec": round(fs),
                "featstore_peak_rss_mib": report["featstore_rss_mib_peak"],
                "duckdb_secs": round(secs, 2),
                "duckdb_cpu_secs": round(cpu, 2),
                "duckdb_threads": threads,
                "duckdb_values_per_sec": round(dd),
                "duckdb_peak_rss_mib": round(peak_mib),
                "featstore_to_duckdb": round(fs / dd, 3),
                "rows_compared": rows,
                "rows_mismatched": mismatched,
            },
            indent=1,
        )
    )
    return 1 if mismatched or rows != report["spine_rows"] else 0


if __name__ == "__main__":
    sys.exit(main())
