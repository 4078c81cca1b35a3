"""The OpenAPI document (docs/openapi.json, served at /openapi.json) against a live demo
server: Schemathesis (pinned in tools/python-requirements.txt) generates requests from it,
bounded in number, and every answer must be no 5xx, have a documented status and content
type, and match its documented schema.

The server is its own (not the session's ``demo_server``): generated requests may change
it (pushes, registry objects, activations)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from conftest import Server, free_port

DOC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("openapi")
    port = free_port()
    s = Server(["demo", "--dir", str(root / "store"), "--addr", f"127.0.0.1:{port}"], port, root / "server.log")
    yield s
    s.stop()


def test_the_served_document_is_the_checked_in_one(server):
    with urllib.request.urlopen(server.url + "/openapi.json", timeout=10) as r:
        assert r.headers["content-type"].startswith("application/json")
        assert json.load(r) == json.loads(DOC.read_text())


def test_schemathesis_finds_no_server_error_and_no_spec_violation(server, tmp_path):
    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.fail("schemathesis is not installed in the test environment (tools/python-requirements.txt)")
    result = subprocess.run(
        [
            exe,
            "run",
            server.url + "/openapi.json",
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "20",
            "--workers",
            "1",
            "--seed",
            "1",
            "--request-timeout",
            "10",
            "--no-color",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "generated" in result.stdout and " failed" not in result.stdout.split("SUMMARY")[-1]
