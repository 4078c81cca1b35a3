"""The Python test harness itself: the demo server starts and answers a read."""

import json
import urllib.request


def test_demo_server_answers_a_get(demo_server):
    url = demo_server.url + "/v1/features/product/p42?names=product_price"
    with urllib.request.urlopen(url, timeout=5) as r:
        body = json.load(r)
    assert r.status == 200
    assert body["entity_id"] == "p42"
