"""The real Feast SDK (PyPI ``feast``, the version pinned in tools/python-requirements.txt)
reading featstore through ``online_store: {type: remote}``.

This server runs open (no token file); test_feast_auth.py reads one that has a token
file, through the SDK's ``auth: {type: oidc, token_env_var: ..}``.
"""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import requests

from feast import FeatureService, FeatureStore
from feast.errors import (
    FeatureServiceNotFoundException,
    FeatureViewNotFoundException,
    PushSourceNotFoundException,
)

import compat_store

HERE = compat_store.HERE


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = compat_store.serve(tmp_path_factory.mktemp("feast_compat"))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def store(server, tmp_path_factory):
    repo = tmp_path_factory.mktemp("feast_repo")
    config = (HERE / "feast_repo" / "feature_store.yaml.in").read_text()
    config = config.replace("@URL@", server.url).replace("@REGISTRY@", str(repo / "registry.db"))
    (repo / "feature_store.yaml").write_text(config)
    fs = FeatureStore(repo_path=str(repo))
    import sys

    sys.path.insert(0, str(HERE / "feast_repo"))
    try:
        import definitions
    finally:
        sys.path.pop(0)
    fs.apply(definitions.objects(repo))
    return fs


def statuses(response) -> dict[str, list[str]]:
    from feast.protos.feast.serving.ServingService_pb2 import FieldStatus

    names = list(response.proto.metadata.feature_names.val)
    return {n: [FieldStatus.Name(s) for s in r.statuses] for n, r in zip(names, response.proto.results)}


def test_a_list_of_features_composite_keys_and_on_demand(store):
    rows = [
        {"user_id": "u1", "product_id": "p1"},
        {"user_id": "u2", "product_id": "p2"},
        {"user_id": "u1", "product_id": "p3"},
    ]
    response = store.get_online_features(
        features=[
            "user_stats:user_age",
            "product_stats:product_price",
            "product_stats:product_name",
            "user_product_stats:up_affinity",
            "on_demand:user_product_sim",
            "on_demand:product_ctr",
        ],
        entity_rows=rows,
    )
    d = response.to_dict()
    assert list(d) == [
        "user_id",
        "product_id",
        "user_age",
        "product_price",
        "product_name",
        "up_affinity",
        "user_product_sim",
        "product_ctr",
    ]
    assert d["user_id"] == ["u1", "u2", "u1"]
    assert d["user_age"] == [31, 45, 31]
    # 20 is stored as a float64 and must arrive as a float, not an int.
    assert d["product_price"][:2] == [10.5, 20.0] and isinstance(d["product_price"][1], float)
    assert d["product_price"][2] is None
    assert d["product_name"] == ["red shoe", "blue hat", None]
    # Composite entity user_product keyed from both join keys.
    assert d["up_affinity"] == [0.7, 0.2, None]
    assert d["user_product_sim"][0] == pytest.approx(1 / math.sqrt(2))
    assert d["user_product_sim"][1] == pytest.approx(1.0)
    assert d["product_ctr"][0] == pytest.approx(0.05)
    s = statuses(response)
    assert s["product_price"] == ["PRESENT", "PRESENT", "NULL_VALUE"]
    assert s["product_name"] == ["PRESENT", "PRESENT", "NULL_VALUE"]
    assert s["up_affinity"] == ["PRESENT", "PRESENT", "NOT_FOUND"]


def test_full_feature_names_and_column_form_rows(store):
    response = store.get_online_features(
        features=["user_stats:user_age", "product_stats:product_price"],
        entity_rows={"user_id": ["u1"], "product_id": ["p1"]},
        full_feature_names=True,
    )
    d = response.to_dict()
    assert d == {
        "user_id": ["u1"],
        "product_id": ["p1"],
        "user_stats__user_age": [31],
        "product_stats__product_price": [10.5],
    }


def test_a_feature_service(store):
    service = FeatureService(name="ranker_v1", features=[])
    response = store.get_online_features(
        features=service,
        entity_rows=[{"user_id": "u1", "product_id": "p1"}, {"user_id": "u1", "product_id": "p2"}],
    )
    d = response.to_dict()
    assert list(d) == ["user_id", "product_id", "user_age", "product_price", "up_affinity", "user_product_sim"]
    assert d["user_age"] == [31, 31]
    assert d["product_price"] == [10.5, 20.0]
    assert d["up_affinity"] == [0.7, None]


def test_missing_entities_are_not_found(store):
    response = store.get_online_features(
        features=["user_stats:user_age", "product_stats:product_price"],
        entity_rows=[{"user_id": "nobody", "product_id": "p1"}, {"user_id": "u1", "product_id": "nothing"}],
    )
    d = response.to_dict()
    assert d["user_age"] == [None, 31]
    assert d["product_price"] == [10.5, None]
    s = statuses(response)
    assert s["user_age"] == ["NOT_FOUND", "PRESENT"]
    assert s["product_price"] == ["PRESENT", "NOT_FOUND"]


def test_expired_values_are_outside_max_age(store):
    response = store.get_online_features(
        features=["user_stats:user_score", "user_stats:user_age"],
        entity_rows=[{"user_id": "u1"}, {"user_id": "u2"}],
    )
    assert response.to_dict()["user_score"] == [0.5, None]
    assert statuses(response)["user_score"] == ["PRESENT", "OUTSIDE_MAX_AGE"]
    # user_age has no TTL: u2's three-day-old value is still served.
    assert response.to_dict()["user_age"] == [31, 45]


def test_unknown_features_views_and_services_raise_feast_exceptions(store):
    with pytest.raises(FeatureViewNotFoundException, match="no_such_feature"):
        store.get_online_features(features=["user_stats:no_such_feature"], entity_rows=[{"user_id": "u1"}])
    # A real feature asked under the wrong view is unknown too.
    with pytest.raises(FeatureViewNotFoundException, match="product_stats"):
        store.get_online_features(features=["user_stats:product_price"], entity_rows=[{"product_id": "p1"}])
    with pytest.raises(FeatureServiceNotFoundException):
        store.get_online_features(features=FeatureService(name="nope", features=[]), entity_rows=[{"user_id": "u1"}])


def test_sdk_push_and_its_retry_are_harmless(store, server):
    df = pd.DataFrame(
        {
            "product_id": ["p1", "p2"],
            "live_price": [9.5, 19.0],
            "live_clicks": [3, 4],
            "event_timestamp": pd.to_datetime([compat_store.NOW - 60_000] * 2, unit="ms", utc=True),
        }
    )
    store.push("product_live_push", df)
    # The SDK retries a POST on 5xx/429: the same rows again change nothing.
    store.push("product_live_push", df)
    d = store.get_online_features(
        features=["product_live:live_price", "product_live:live_clicks"],
        entity_rows=[{"product_id": "p1"}, {"product_id": "p2"}],
    ).to_dict()
    assert d["live_price"] == [9.5, 19.0]
    assert d["live_clicks"] == [3, 4]


def test_feast_push_endpoint_is_idempotent(server):
    body = {
        "push_source_name": "product_live",
        "df": {
            "product_id": ["p3"],
            "live_price": [1.25],
            "live_clicks": [2],
            "event_timestamp": ["2026-01-01T00:00:00"],
        },
        "to": "online",
    }
    first = requests.post(server.url + "/push", json=body, timeout=10)
    assert first.status_code == 200, first.text
    assert first.json()["accepted"] == 1
    again = requests.post(server.url + "/push", json=body, timeout=10)
    assert again.status_code == 200
    assert again.json()["duplicates"] == 1 and again.json()["values_written"] == 0
    # Feast's own error classes come back for Feast-shaped failures.
    bad = requests.post(server.url + "/push", json={**body, "push_source_name": "nope"}, timeout=10)
    assert bad.status_code == 422
    detail = json.loads(bad.json())
    assert (detail["module"], detail["class"]) == ("feast.errors", PushSourceNotFoundException.__name__)
    offline = requests.post(server.url + "/push", json={**body, "to": "offline"}, timeout=10)
    assert offline.status_code == 400


def test_wire_details_the_sdk_does_not_show(server):
    """Event timestamps (RFC 3339, ``Z``) and NaN handling, read over plain HTTP."""
    r = requests.post(
        server.url + "/get-online-features",
        json={"entities": {"user_id": ["u1", "u9"]}, "features": ["user_stats:user_age"]},
        timeout=10,
    )
    assert r.status_code == 200
    body = r.json()
    assert body["metadata"]["feature_names"] == ["user_id", "user_age"]
    ts = body["results"][1]["event_timestamps"]
    expected = pd.Timestamp(compat_store.NOW, unit="ms", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
    assert ts == [expected, "1970-01-01T00:00:00Z"]
    assert body["results"][0]["statuses"] == ["PRESENT", "PRESENT"]
