"""Feast objects for the featstore compatibility tests (tests/python/test_feast_sdk.py).

Reads through Feast's remote online store need no registry entries: the SDK sends the
``view:feature`` references (or a service name) as given. Writes do: ``FeatureStore.push``
and ``write_to_online_store`` look the feature view up and send its name, which featstore
reads as the feature group (``product_live`` in ``featstore_registry.toml``).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Float64, Int64


def objects(data_dir: Path) -> list:
    """The Feast objects to apply; ``data_dir`` holds the (empty) batch source file."""
    import pandas as pd

    batch_path = data_dir / "product_live.parquet"
    pd.DataFrame(
        {
            "product_id": pd.Series([], dtype="string"),
            "live_price": pd.Series([], dtype="float64"),
            "live_clicks": pd.Series([], dtype="int64"),
            "event_timestamp": pd.Series([], dtype="datetime64[ns, UTC]"),
        }
    ).to_parquet(batch_path)
    product = Entity(name="product", join_keys=["product_id"], value_type=ValueType.STRING)
    batch = FileSource(name="product_live_batch", path=str(batch_path), timestamp_field="event_timestamp")
    push = PushSource(name="product_live_push", batch_source=batch)
    live = FeatureView(
        name="product_live",
        entities=[product],
        ttl=timedelta(days=1),
        schema=[Field(name="live_price", dtype=Float64), Field(name="live_clicks", dtype=Int64)],
        source=push,
        online=True,
    )
    return [product, batch, push, live]
