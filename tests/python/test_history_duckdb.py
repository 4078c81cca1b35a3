"""Point-in-time training sets against DuckDB's ASOF JOIN.

Random daily versions of one float feature (overlapping event times, a backfill with
older times, entities dropped from a version) are loaded with the CLI; a random spine is
joined by ``featstore training-set`` and, independently, by DuckDB's ``ASOF LEFT JOIN``
over ``featstore export-history``'s Parquet (first checked to hold exactly the values
loaded), with Feast's TTL rule applied after the join. Both must agree row for row:
value, event time and status.
"""

from __future__ import annotations

import random

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from conftest import featstore_cli as run

FEATURES = """
[[feature]]
name = "a"
entity_type = "item"
group = "items"
owner = "tests"
dtype = "float64"
ttl = "50s"
"""

TTL_MS = 50_000


def test_training_set_equals_duckdb_asof_join(tmp_path):
    rng = random.Random(14)
    data = str(tmp_path / "store")
    (tmp_path / "features.toml").write_text(FEATURES)
    run("apply", str(tmp_path / "features.toml"), "--data", data)
    base = 1_700_000_000_000
    loaded = []  # (entity, event_time, value)
    for version in range(4):
        lines = ["entity_id,feature_name,event_time,value"]
        for e in range(20):
            if rng.random() < 0.2:
                continue  # dropped from this version
            # Event times in 1 s steps, each version on its own residue mod 4 so no two
            # loaded values of an entity share an event time; version 2 is a backfill.
            step = rng.randrange(0, 100) * 4 + version
            if version == 2:
                step = rng.randrange(0, 20) * 4 + version
            t = base + step * 1000
            v = round(rng.uniform(-10, 10), 3)
            lines.append(f"e{e},a,{t},{v}")
            loaded.append((f"e{e}", t, v))
        path = tmp_path / f"v{version}.csv"
        path.write_text("\n".join(lines) + "\n")
        run("load", "--group", "items", "--input", str(path), "--data", data)

    spine = {
        "item_id": [f"e{rng.randrange(0, 22)}" for _ in range(300)],
        "event_timestamp": [base + rng.randrange(-5, 460) * 1000 + rng.choice([0, 1, 999]) for _ in range(300)],
        "label": list(range(300)),
    }
    # Rows exactly at the TTL boundary and one past it.
    for i, (e, t, _) in enumerate(loaded[:5]):
        spine["item_id"] += [e, e]
        spine["event_timestamp"] += [t + TTL_MS, t + TTL_MS + 1]
        spine["label"] += [-1 - 2 * i, -2 - 2 * i]
    pq.write_table(pa.table(spine), tmp_path / "spine.parquet")
    # The oracle reads featstore's own export of its history (docs/history-export.md),
    # which must hold exactly the values loaded: every version was activated.
    hist = tmp_path / "hist"
    run("export-history", "--out", str(hist), "--data", data)
    exported = pq.read_table(hist / "group=items" / "feature=a" / "version=1").to_pylist()
    assert sorted((r["entity_id"], int(r["event_time"].timestamp() * 1000), r["value"]) for r in exported) == sorted(loaded)
    assert {r["source"] for r in exported} == {"batch"}
    run(
        "training-set", "--spine", str(tmp_path / "spine.parquet"), "--features", "a",
        "--out", str(tmp_path / "train.parquet"), "--data", data,
    )
    got = pq.read_table(tmp_path / "train.parquet").to_pylist()

    con = duckdb.connect()
    expected = con.execute(
        f"""
        SELECT s.label, v.value, v.event_time
        FROM read_parquet('{tmp_path / "spine.parquet"}') s
        ASOF LEFT JOIN (
            SELECT entity_id, epoch_ms(event_time) AS event_time, value
            FROM read_parquet('{hist}/group=items/feature=a/version=1/*.parquet')
        ) v
          ON s.item_id = v.entity_id AND s.event_timestamp >= v.event_time
        """
    ).fetchall()
    by_label = {label: (value, time) for (label, value, time) in expected}
    assert len(got) == len(spine["label"])
    checked = {"present": 0, "expired": 0, "not_found": 0}
    for row in got:
        value, time = by_label[row["label"]]
        if time is None:
            status = "not_found"
        elif row["event_timestamp"] - time > TTL_MS:
            status = "expired"
        else:
            status = "present"
        checked[status] += 1
        assert row["a__status"] == status, row
        assert row["a__event_time"] == time, row
        assert row["a"] == (value if status == "present" else None), row
    assert all(n > 0 for n in checked.values()), checked
