"""The real Feast SDK reading a featstore server that runs with a token file.

Feast's remote online store sends ``Authorization: Bearer <token>`` when its
``feature_store.yaml`` has ``auth: {type: oidc, token_env_var: NAME}``: the client takes
the token from that variable as is (no identity provider is asked), so a featstore token
works unchanged. The token is made with ``featstore token new``, as the README says.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import requests

from feast import FeatureStore

import compat_store
from conftest import Server, featstore_bin, free_port

HERE = compat_store.HERE
TOKEN_VAR = "FEATSTORE_TEST_FEAST_TOKEN"


def new_token(*args: str) -> tuple[str, str]:
    """(token, its [[principal]] table) from ``featstore token new``."""
    r = subprocess.run([featstore_bin(), "token", "new", *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    token = r.stderr.strip().splitlines()[-1]
    assert token.startswith("fst."), r.stderr
    return token, r.stdout


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("feast_auth")
    data = compat_store.build(root)
    reader, reader_entry = new_token(
        "--id", "ranker", "--team", "ranking", "--scope", "read", "--read", "product_*,group:product_stats"
    )
    tokens = root / "tokens.toml"
    tokens.write_text(reader_entry)
    port = free_port()
    s = Server(
        ["serve", "--data", str(data), "--addr", f"127.0.0.1:{port}", "--token-file", str(tokens)],
        port,
        root / "server.log",
    )
    s.reader = reader
    yield s
    s.stop()


def feast_store(server, repo, token_var: str):
    config = (HERE / "feast_repo" / "feature_store.yaml.in").read_text()
    config = config.replace("@URL@", server.url).replace("@REGISTRY@", str(repo / "registry.db"))
    config += f"auth:\n  type: oidc\n  token_env_var: {token_var}\n"
    (repo / "feature_store.yaml").write_text(config)
    fs = FeatureStore(repo_path=str(repo))
    sys.path.insert(0, str(HERE / "feast_repo"))
    try:
        import definitions
    finally:
        sys.path.pop(0)
    fs.apply(definitions.objects(repo))
    return fs


def test_the_sdk_reads_with_a_token_and_a_denied_feature_is_named(server, tmp_path, monkeypatch):
    monkeypatch.setenv(TOKEN_VAR, server.reader)
    fs = feast_store(server, tmp_path, TOKEN_VAR)
    d = fs.get_online_features(
        features=["product_stats:product_price"], entity_rows=[{"product_id": "p1"}]
    ).to_dict()
    assert d["product_price"] == [10.5]
    with pytest.raises(Exception) as denied:
        fs.get_online_features(features=["user_stats:user_age"], entity_rows=[{"user_id": "u1"}])
    assert "user_age" in str(denied.value)


def test_the_sdk_without_a_valid_token_is_refused(server, tmp_path, monkeypatch):
    monkeypatch.setenv(TOKEN_VAR, "fst.ranker." + "0" * 64)
    fs = feast_store(server, tmp_path, TOKEN_VAR)
    with pytest.raises(Exception) as refused:
        fs.get_online_features(features=["product_stats:product_price"], entity_rows=[{"product_id": "p1"}])
    assert "401" in str(refused.value) or "invalid token" in str(refused.value)


def test_plain_http_gets_401_and_403_bodies(server):
    url = server.url + "/get-online-features"
    body = {"entities": {"product_id": ["p1"]}, "features": ["product_stats:product_price"]}
    r = requests.post(url, json=body, timeout=10)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert "error" in r.json()
    auth = {"Authorization": f"Bearer {server.reader}"}
    assert requests.post(url, json=body, headers=auth, timeout=10).status_code == 200
    body = {"entities": {"user_id": ["u1"]}, "features": ["user_stats:user_age"]}
    r = requests.post(url, json=body, headers=auth, timeout=10)
    assert r.status_code == 403
    assert "user_age" in r.text
    assert os.environ.get(TOKEN_VAR) is None
