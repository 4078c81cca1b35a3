"""The PySpark job (tools/spark/training_set.py) against featstore's own training sets.

A store gets batch versions (one a backfill loaded without activation and activated
later, then a rollback), late and out-of-order pushes, a composite-keyed group, a TTL,
a freshness SLO and a default, all through the CLI. ``featstore export-history`` writes
its history; Spark in local mode builds the training set from that export, and its
output must equal ``featstore training-set``'s row for row and column for column, with
and without ``--as-known-at``.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import featstore_cli as run

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "spark"))

REGISTRY = """
[[entity_type]]
name = "user_item"
components = ["user", "item"]
owner = "tests"

[[feature]]
name = "a"
entity_type = "item"
group = "items"
owner = "tests"
dtype = "float64"
ttl = "40s"

[[feature]]
name = "b"
entity_type = "item"
group = "items"
owner = "tests"
dtype = "int64"
freshness_slo = "20s"
default = 7

[[feature]]
name = "affinity"
entity_type = "user_item"
group = "affinity"
owner = "tests"
dtype = "float64"
"""


def now_ms() -> int:
    return int(time.time() * 1000)


@pytest.fixture(scope="module")
def spark():
    # Pinned in tools/python-requirements.txt: missing, the test fails rather than skips.
    import pyspark.sql as pyspark
    session = (
        pyspark.SparkSession.builder.master("local[1]")
        .appName("featstore-test")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def test_spark_job_equals_featstore_training_set(tmp_path, spark):
    import training_set

    rng = random.Random(1414)
    data = str(tmp_path / "store")
    (tmp_path / "registry.toml").write_text(REGISTRY)
    run("apply", str(tmp_path / "registry.toml"), "--data", data)
    base = now_ms() - 100_000  # event times: the last 100 s, in 1 s steps
    moments = [now_ms()]  # wall times between operations, where as-known-at changes

    def load(group: str, rows: list[str], *extra: str) -> None:
        path = tmp_path / f"load{len(moments)}.csv"
        path.write_text("entity_id,feature_name,event_time,value\n" + "\n".join(rows) + "\n")
        run("load", "--group", group, "--input", str(path), "--data", data, *extra)
        moments.append(now_ms())

    def items_version(residue: int) -> list[str]:
        rows = []
        for e in range(12):
            if rng.random() < 0.2:
                continue  # dropped from this version
            rows.append(f"e{e},a,{base + (rng.randrange(0, 25) * 4 + residue) * 1000},{rng.uniform(-5, 5):.3f}")
            if rng.random() < 0.8:
                rows.append(f"e{e},b,{base + (rng.randrange(0, 25) * 4 + residue) * 1000},{rng.randrange(-50, 50)}")
        return rows

    load("items", items_version(0))
    load("items", items_version(1))
    # A backfill of older times, loaded without activation and activated later.
    load("items", [r for r in items_version(2) if rng.random() < 0.7], "--no-activate")
    events = []
    for _ in range(15):
        e = rng.randrange(0, 12)
        step = rng.randrange(0, 25) * 4 + 3  # pushes on their own residue: no ties
        events.append(
            {"entity_type": "item", "entity_id": f"e{e}", "event_time": base + step * 1000,
             "features": {"a": round(rng.uniform(-5, 5), 3)}}
        )
    (tmp_path / "push.json").write_text(json.dumps({"events": events}))
    run("push", str(tmp_path / "push.json"), "--data", data)
    moments.append(now_ms())
    run("versions", "activate", "items", "3", "--data", data)
    moments.append(now_ms())
    run("versions", "rollback", "items", "--data", data)
    moments.append(now_ms())
    load("affinity", [f"u{u}|e{e},affinity,{base + rng.randrange(0, 100) * 1000},{rng.random():.3f}"
                      for u in range(3) for e in range(0, 12, 3)])

    spine = {"user_id": [], "item_id": [], "event_timestamp": [], "label": []}
    times = [base + rng.randrange(-5, 105) * 1000 + rng.choice([0, 1, 999]) for _ in range(200)]
    times += [m + d for m in moments for d in (-1, 0, 1)]
    for i, ts in enumerate(times):
        spine["user_id"].append(f"u{rng.randrange(0, 4)}")
        spine["item_id"].append(f"e{rng.randrange(0, 13)}")
        spine["event_timestamp"].append(ts)
        spine["label"].append(i)
    pq.write_table(pa.table(spine), tmp_path / "spine.parquet")

    hist = tmp_path / "hist"
    summary = json.loads(run("export-history", "--out", str(hist), "--data", data))
    assert summary["groups"] == 2 and summary["features"] == 3, summary
    features = ["a", "b", "affinity"]
    for as_known_at in (False, True):
        mode = ["--as-known-at"] if as_known_at else []
        ours = tmp_path / f"featstore-{as_known_at}.parquet"
        run("training-set", "--spine", str(tmp_path / "spine.parquet"), "--features", ",".join(features),
            "--out", str(ours), "--data", data, *mode)
        theirs = str(tmp_path / f"spark-{as_known_at}.parquet")
        rows = training_set.build(spark, str(hist), str(tmp_path / "spine.parquet"), features, theirs,
                                  as_known_at=as_known_at)
        assert rows == len(times)
        expected = pq.read_table(ours).to_pylist()
        got = pq.read_table(theirs).to_pylist()
        assert len(got) == len(expected)
        statuses = set()
        for want, have in zip(expected, got):
            for column, value in want.items():
                assert have[column] == value, f"{column} as_known_at={as_known_at}: {[(k, want[k], have[k]) for k in want]}"
            statuses.update(want[f"{f}__status"] for f in features)
        # The run exercises every rule the job reimplements.
        assert {"present", "expired", "not_found", "stale", "defaulted"} <= statuses, statuses


def test_spark_job_refuses_what_it_cannot_answer(tmp_path, spark):
    import training_set

    data = str(tmp_path / "store")
    (tmp_path / "registry.toml").write_text(REGISTRY)
    run("apply", str(tmp_path / "registry.toml"), "--data", data)
    (tmp_path / "v.csv").write_text(f"entity_id,feature_name,event_time,value\ne1,a,{now_ms()},1.5\n")
    run("load", "--group", "items", "--input", str(tmp_path / "v.csv"), "--data", data)
    hist = tmp_path / "hist"
    run("export-history", "--out", str(hist), "--group", "items", "--data", data)
    pq.write_table(pa.table({"item_id": ["e1"], "event_timestamp": [now_ms()]}), tmp_path / "s.parquet")
    with pytest.raises(training_set.JobError, match="not in the export"):
        training_set.build(spark, str(hist), str(tmp_path / "s.parquet"), ["affinity"], str(tmp_path / "o1"))
    with pytest.raises(training_set.JobError, match="no key column"):
        pq.write_table(pa.table({"shop": ["x"], "event_timestamp": [1]}), tmp_path / "k.parquet")
        training_set.build(spark, str(hist), str(tmp_path / "k.parquet"), ["a"], str(tmp_path / "o2"))
    with pytest.raises(training_set.JobError, match="not a featstore history export"):
        training_set.build(spark, str(tmp_path), str(tmp_path / "s.parquet"), ["a"], str(tmp_path / "o3"))
    assert not os.path.exists(tmp_path / "o1")
