"""Point-in-time training sets on Spark, from a featstore history export.

When a spine outgrows one machine, `featstore export-history --out HIST` writes the
history as partitioned Parquet (docs/history-export.md) and this job builds the same
training set as `featstore training-set --spine` on a Spark cluster:

    spark-submit tools/spark/training_set.py --history HIST --spine spine.parquet \
        --features a,b@2 --out train.parquet [--as-known-at] [--timestamp-column C]

Semantics (docs/history-export.md, "Picking a value"): per spine row and feature, the
exported value with the greatest (event time, stream before batch, write time or
version) among those with event time <= the row's timestamp (and known at <= it with
--as-known-at); TTL judged from the row's timestamp (`ts - event_time <= ttl`, Feast's
rule), then the freshness SLO and the default, as featstore applies them. Output: the
spine's columns unchanged, then per feature `{name}`, `{name}__status` and
`{name}__event_time` (epoch ms), rows in the spine's order. On-demand features are
computed by featstore only and are refused here.

Keys: an entity type `t` is keyed by a spine column `t_id` or `t`; a composite type by
one such column per component. Integer keys are compared as their decimal text.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

SPARK_TYPES = {
    "int64": T.LongType(),
    "float64": T.DoubleType(),
    "float32": T.FloatType(),
    "bool": T.BooleanType(),
    "string": T.StringType(),
    "bytes": T.BinaryType(),
}

ROW_ID = "__featstore_row"
TS = "__featstore_ts"


class JobError(Exception):
    """The job cannot run as asked (a missing feature, key or column)."""


def load_manifest(history: str) -> dict:
    path = os.path.join(history, "_manifest.json")
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except FileNotFoundError as e:
        raise JobError(f"{path}: not a featstore history export (no manifest)") from e
    if manifest.get("format") != 1:
        raise JobError(f"{path}: export format {manifest.get('format')} is not 1")
    return manifest


def resolve(manifest: dict, requested: str) -> tuple[dict, dict]:
    """The (group, feature) entries of `name` or `name@version`."""
    name, _, version = requested.partition("@")
    for group in manifest["groups"]:
        for feature in group["features"]:
            if feature["name"] != name:
                continue
            if (version and str(feature["version"]) == version) or (
                not version and feature["current"]
            ):
                return group, feature
    raise JobError(
        f"feature `{requested}` is not in the export (on-demand features are computed by "
        "featstore only; export the group, or name an exported version)"
    )


def key_column(columns: list[str], name: str) -> str | None:
    for candidate in (f"{name}_id", name):
        if candidate in columns:
            return candidate
    return None


def spine_keys(columns: list[str], group: dict) -> list[tuple[str, str]]:
    """(spine column, export column) pairs that key the group's entity type."""
    components = group["entity_components"]
    whole = key_column(columns, group["entity_type"])
    if whole is not None:
        return [(whole, "entity_id")]
    if components:
        pairs = [(key_column(columns, c), f"{c}_id") for c in components]
        if all(s is not None for s, _ in pairs):
            return pairs
    raise JobError(
        f"the spine has no key column for entity type `{group['entity_type']}` "
        f"(columns: {', '.join(columns)})"
    )


def timestamp_ms(spine: DataFrame, column: str) -> F.Column:
    dtype = spine.schema[column].dataType
    c = F.col(column)
    if isinstance(dtype, (T.TimestampType, T.TimestampNTZType)):
        return F.unix_millis(c)
    if isinstance(dtype, (T.LongType, T.IntegerType, T.ShortType)):
        return c.cast("long")
    if isinstance(dtype, T.StringType):
        return F.when(c.rlike(r"^-?[0-9]+$"), c.cast("long")).otherwise(
            F.unix_millis(F.to_timestamp(c))
        )
    raise JobError(f"timestamp column `{column}` has type {dtype.simpleString()}")


def value_type(dtype: str) -> T.DataType:
    if dtype.startswith("float32_vector"):
        return T.ArrayType(T.FloatType())
    return SPARK_TYPES[dtype]


def feature_columns(
    spark: SparkSession,
    history: str,
    spine: DataFrame,
    group: dict,
    feature: dict,
    as_known_at: bool,
    now_ms: int,
) -> DataFrame:
    """(row id, value, status, event time) of one feature for every spine row."""
    name = feature["name"]
    keys = spine_keys(spine.columns, group)
    values = spark.read.parquet(os.path.join(history, feature["path"])).select(
        *[F.col(export).alias(f"__k{i}") for i, (_, export) in enumerate(keys)],
        F.col("value").alias("__value"),
        F.unix_millis("event_time").alias("__event"),
        F.unix_millis("known_at").alias("__known"),
        (F.col("source") == "stream").alias("__stream"),
        F.when(F.col("source") == "stream", F.unix_millis("known_at"))
        .otherwise(F.col("batch_version"))
        .alias("__tie"),
    )
    rows = spine.select(
        ROW_ID,
        TS,
        *[F.col(s).cast("string").alias(f"__s{i}") for i, (s, _) in enumerate(keys)],
    )
    cond = [rows[f"__s{i}"] == values[f"__k{i}"] for i in range(len(keys))]
    cond.append(values["__event"] <= rows[TS])
    if as_known_at:
        cond.append(values["__known"] <= rows[TS])
    joined = rows.join(values, on=cond, how="inner")
    newest = Window.partitionBy(ROW_ID).orderBy(
        F.col("__event").desc(), F.col("__stream").desc(), F.col("__tie").desc()
    )
    picked = (
        joined.withColumn("__rank", F.row_number().over(newest))
        .where(F.col("__rank") == 1)
        .select(ROW_ID, "__value", "__event")
    )
    out = rows.select(ROW_ID, TS).join(picked, on=ROW_ID, how="left")
    age = F.col(TS) - F.col("__event")
    ttl, slo = feature.get("ttl_ms"), feature.get("freshness_slo_ms")
    status = F.when(F.col("__event").isNull(), F.lit("not_found"))
    if feature.get("retention_ms") is not None:
        # Past the feature's retention at the wall clock: expired, as featstore judges.
        retained_from = now_ms - feature["retention_ms"]
        status = status.when(F.col("__event") < F.lit(retained_from), F.lit("expired"))
    if ttl is not None:
        status = status.when(age > F.lit(ttl), F.lit("expired"))
    status = status.when(F.col("__value").isNull(), F.lit("null"))
    if slo is not None:
        status = status.when(age > F.lit(slo), F.lit("stale"))
    status = status.otherwise(F.lit("present"))
    out = out.withColumn("__status", status)
    vtype = value_type(feature["dtype"])
    value = F.when(F.col("__status") == "expired", F.lit(None).cast(vtype)).otherwise(
        F.col("__value").cast(vtype)
    )
    event = F.col("__event")
    status = F.col("__status")
    if feature.get("default") is not None:
        unusable = F.col("__status").isin("not_found", "null", "expired")
        value = F.when(unusable, F.lit(feature["default"]).cast(vtype)).otherwise(value)
        event = F.when(unusable, F.lit(None).cast("long")).otherwise(event)
        status = F.when(unusable, F.lit("defaulted")).otherwise(status)
    # One select: every output column is judged on the status before any default.
    return out.select(
        ROW_ID,
        value.alias(name),
        status.alias(f"{name}__status"),
        event.cast("long").alias(f"{name}__event_time"),
    )


def read_spine(spark: SparkSession, path: str) -> DataFrame:
    if path.endswith(".parquet"):
        return spark.read.parquet(path)
    return spark.read.option("header", True).option("inferSchema", True).csv(path)


def build(
    spark: SparkSession,
    history: str,
    spine_path: str,
    features: list[str],
    out: str,
    timestamp_column: str = "event_timestamp",
    as_known_at: bool = False,
) -> int:
    """Writes the training set to `out` (a Parquet directory); returns its rows."""
    manifest = load_manifest(history)
    resolved = [resolve(manifest, f) for f in features]
    raw = read_spine(spark, spine_path)
    if timestamp_column not in raw.columns:
        raise JobError(
            f"no timestamp column `{timestamp_column}` (columns: {', '.join(raw.columns)})"
        )
    labels = raw.columns
    spine = raw.withColumn(ROW_ID, F.monotonically_increasing_id()).withColumn(
        TS, timestamp_ms(raw, timestamp_column)
    )
    spine = spine.cache()
    now_ms = int(time.time() * 1000)
    result = spine
    for group, feature in resolved:
        result = result.join(
            feature_columns(spark, history, spine, group, feature, as_known_at, now_ms),
            on=ROW_ID,
            how="left",
        )
    names = []
    for _, feature in resolved:
        n = feature["name"]
        names += [n, f"{n}__status", f"{n}__event_time"]
    result = result.orderBy(ROW_ID).select(*labels, *names)
    result.write.mode("error").parquet(out)
    return spine.count()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--history", required=True, help="a featstore export-history directory")
    parser.add_argument("--spine", required=True, help="spine (.parquet, else CSV with a header)")
    parser.add_argument("--features", required=True, help="comma-separated name or name@version")
    parser.add_argument("--out", required=True, help="the Parquet directory to write")
    parser.add_argument("--timestamp-column", default="event_timestamp")
    parser.add_argument("--as-known-at", action="store_true")
    parser.add_argument("--master", default=None, help="e.g. local[2] (default: spark-submit's)")
    args = parser.parse_args(argv)
    builder = SparkSession.builder.appName("featstore-training-set")
    if args.master:
        builder = builder.master(args.master)
    spark = builder.getOrCreate()
    try:
        features = [f.strip() for f in args.features.split(",") if f.strip()]
        rows = build(
            spark,
            args.history,
            args.spine,
            features,
            args.out,
            args.timestamp_column,
            args.as_known_at,
        )
    except JobError as e:
        print(f"training_set: {e}", file=sys.stderr)
        return 2
    finally:
        spark.stop()
    print(json.dumps({"rows": rows, "out": args.out}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
