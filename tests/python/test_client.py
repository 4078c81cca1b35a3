"""The Python client (clients/python) against a running featstore, and its binary
decoder against golden answers the server produced (tests/python/golden)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import compat_store
from featstore_client import NO_TIME, BadRequest, Client, DecodeError, NotFound, PushRejected, decode_rank

GOLDEN = Path(__file__).resolve().parent / "golden"

#: The ranking request of the golden answers: every dtype, a composite key, an
#: on-demand feature, present, null, not found, expired and defaulted values.
RANK_BODY = {
    "context": {"user": "u1"},
    "candidates": {"entity_type": "product", "ids": ["p1", "p2", "p3", "p9"]},
    "features": [
        "user_age",
        "user_score",
        "product_price",
        "product_clicks",
        "product_name",
        "product_emb",
        "up_affinity",
        "user_product_sim",
    ],
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = compat_store.serve(tmp_path_factory.mktemp("client"))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def golden_server(tmp_path_factory):
    s = compat_store.serve(tmp_path_factory.mktemp("golden"), now=compat_store.GOLDEN_NOW)
    yield s
    s.stop()


@pytest.fixture()
def client(server):
    with Client(server.url) as c:
        yield c


def assert_matches_json(decoded, answer: dict) -> None:
    """Every cell of the decoded binary answer equals the server's JSON answer. Computed
    (on-demand) values carry their request's time, which differs between two requests:
    an event time equal to the JSON answer's ``now_ms`` must be the binary one's."""
    times = [decoded.now_ms if t == answer["now_ms"] else t for t in answer["event_times"]]
    assert decoded.complete == answer["complete"]
    assert decoded.service == answer["service"]
    ctx = answer["context"]
    assert decoded.context_entities == ctx["entities"]
    assert list(decoded.context) == ctx["features"]
    for i, name in enumerate(ctx["features"]):
        cell = decoded.context[name]
        assert cell.status == ctx["status"][i]
        t = ctx["event_time"][i]
        assert cell.event_time == (None if t is None else times[t])
        assert cell.value == ctx["values"][i]
    cands = answer["candidates"]
    assert decoded.candidate_type == cands["entity_type"]
    assert list(decoded.columns) == cands["features"]
    assert decoded.ids == [r["id"] for r in cands["rows"]]
    for j, name in enumerate(cands["features"]):
        col = decoded.columns[name]
        for i, row in enumerate(cands["rows"]):
            assert chr(col.status[i]) == row["status"][j], (name, i)
            t = row["event_time"][j]
            assert col.event_time[i] == (NO_TIME if t is None else times[t]), (name, i)
            want = row["values"][j]
            if want is None:
                assert not col.has_value[i] or col.dtype in ("float32", "float64"), (name, i)
                continue
            got = col.values[i]
            if col.dtype == "float32_vector":
                assert got.tolist() == pytest.approx(want), (name, i)
            elif col.dtype in ("float32", "float64"):
                assert float(got) == pytest.approx(want, rel=1e-7), (name, i)
            else:
                assert got == want, (name, i)
    assert decoded.versions == answer["versions"]
    assert decoded.defaults == answer["defaults"]


def test_rank_decodes_like_the_json_answer(client):
    decoded = client.rank(
        "product", RANK_BODY["candidates"]["ids"], RANK_BODY["features"], context=RANK_BODY["context"]
    )
    assert_matches_json(decoded, client.rank_json(RANK_BODY))
    price = decoded.columns["product_price"]
    assert price.values.dtype == np.float64 and price.values.shape == (4,)
    assert price.statuses() == ["P", "P", "U", "N"]
    emb = decoded.columns["product_emb"]
    assert emb.values.shape == (4, 3) and emb.values.dtype == np.float32
    assert decoded.columns["user_product_sim"].values[0] == pytest.approx(1 / math.sqrt(2))
    assert decoded.context["user_age"].value == 31


def test_golden_answers_decode(golden_server):
    """The committed answers decode to their committed JSON twins, and the server still
    sends those bytes (all but the request time)."""
    with Client(golden_server.url) as c:
        live = c._call("POST", "/v1/rank", RANK_BODY, accept="application/x-featstore-rank")[1]
        live_json = c.rank_json(RANK_BODY)
    if os.environ.get("FEATSTORE_REGEN_GOLDEN") == "1":
        GOLDEN.mkdir(exist_ok=True)
        (GOLDEN / "rank.bin").write_bytes(live)
        (GOLDEN / "rank.json").write_text(json.dumps(live_json, indent=1) + "\n")
        pytest.skip("golden answers regenerated")
    raw = (GOLDEN / "rank.bin").read_bytes()
    answer = json.loads((GOLDEN / "rank.json").read_text())
    assert_matches_json(decode_rank(raw), answer)
    # The server still answers the golden content (request times aside).
    assert_matches_json(decode_rank(live), answer)
    assert normalized(live_json) == normalized(answer)


def normalized(answer: dict) -> dict:
    """A JSON ranking answer without its request time (also the time of computed values)."""
    out = json.loads(json.dumps(answer))
    now = out.pop("now_ms")
    out["event_times"] = ["now" if t == now else t for t in out["event_times"]]
    return out


def test_decoder_refuses_malformed_answers():
    raw = (GOLDEN / "rank.bin").read_bytes()
    for bad in (b"", b"XXXX" + raw[4:], raw[:4] + b"\x01" + raw[5:], raw[:-1], raw + b"\x00", raw[: len(raw) // 2]):
        with pytest.raises(DecodeError):
            decode_rank(bad)


def test_every_truncation_and_corruption_is_a_decode_error():
    """Any prefix of an answer is refused with DecodeError; any one corrupted byte either
    decodes or raises DecodeError, also when the lazily built arrays are first read."""
    raw = (GOLDEN / "rank.bin").read_bytes()
    for cut in range(len(raw)):
        with pytest.raises(DecodeError):
            decode_rank(raw[:cut])
    for i in range(len(raw)):
        for flip in (0xFF, 0x01):
            bad = bytearray(raw)
            bad[i] ^= flip
            try:
                decoded = decode_rank(bytes(bad))
                for col in decoded.columns.values():
                    col.status, col.event_time, col.has_value
            except DecodeError:
                pass


def test_pandas_and_arrow_conversions(client):
    decoded = client.rank("product", ["p1", "p3", "p9"], ["product_price", "product_clicks", "product_emb", "product_name"])
    df = decoded.to_pandas(statuses=True)
    assert list(df.index) == ["p1", "p3", "p9"]
    assert df["product_price"].iloc[0] == 10.5 and math.isnan(df["product_price"].iloc[1])
    assert df["product_clicks"].tolist()[:2] == [5, 7] and df["product_clicks"].isna().tolist() == [False, False, True]
    assert df["product_name__status"].tolist() == ["P", "U", "N"]
    assert df["product_emb"].iloc[0].tolist() == [1.0, 1.0, 0.0] and df["product_emb"].iloc[2] is None
    table = decoded.to_arrow()
    assert table.column_names == ["id", "product_price", "product_clicks", "product_emb", "product_name"]
    assert table.column("product_price").to_pylist() == [10.5, None, None]
    assert table.column("product_emb").to_pylist()[0] == [1.0, 1.0, 0.0]
    assert table.column("product_name").to_pylist() == ["red shoe", None, None]


def test_get_features_and_registry_listing(client):
    v = client.get_features("product", "p1", ["product_price", "product_name", "product_emb"])
    assert v.values() == {"product_price": 10.5, "product_name": "red shoe", "product_emb": [1.0, 1.0, 0.0]}
    assert v.features["product_price"].status == "present"
    assert v.features["product_price"].event_time == compat_store.NOW
    names = {d["name"] for d in client.feature_definitions(group="product_stats")}
    assert names == {"product_price", "product_clicks", "product_views", "product_emb", "product_name"}
    assert {g["group"] for g in client.groups()} >= {"user_stats", "product_stats", "user_product_stats"}
    assert [s["name"] for s in client.feature_services()] == ["ranker_v1"]
    assert [e["name"] for e in client.entity_types()] == ["user_product"]
    assert {o["name"] for o in client.on_demand_features()} == {"user_product_sim", "product_ctr"}
    assert any(f["feature"] == "user_emb@1" for f in client.lineage())


def test_push_from_dicts_and_frames(client):
    t = compat_store.NOW - 1000
    r = client.push([{"entity_type": "product", "entity_id": "p1", "event_time": t, "features": {"live_price": 3.5, "live_clicks": np.int64(2)}}])
    assert (r.accepted, r.values_written) == (1, 2)
    df = pd.DataFrame(
        {
            "entity_id": ["p2", "p3"],
            "event_time": pd.to_datetime([t, t], unit="ms", utc=True),
            "live_price": [4.5, float("nan")],
            "live_clicks": [7, 8],
        }
    )
    r = client.push(df, entity_type="product")
    assert r.accepted == 2
    again = client.push(df, entity_type="product")
    assert again.values_written == 0 and again.ignored_older == 4
    v = client.get_features("product", "p3", ["live_price", "live_clicks"])
    assert v.features["live_price"].status == "null" and v.values()["live_clicks"] == 8
    assert client.get_features("product", "p2", ["live_price"]).values() == {"live_price": 4.5}


def test_errors_are_classed(client):
    with pytest.raises(NotFound) as e:
        client.get_features("product", "p1", ["no_such_feature"])
    assert e.value.status == 404 and "no_such_feature" in e.value.message
    with pytest.raises(NotFound):
        client.rank("product", ["p1"], service="no_such_service")
    with pytest.raises(BadRequest):
        client.get_features("product", "p1", [])
    with pytest.raises(PushRejected) as e:
        client.push([{"entity_type": "product", "entity_id": "p1", "event_time": 1, "features": {"live_clicks": "many"}}])
    assert e.value.rejected[0][0] == 0 and "live_clicks" in e.value.rejected[0][1]
    with pytest.raises(ValueError):
        client.rank("product", ["p1"])
