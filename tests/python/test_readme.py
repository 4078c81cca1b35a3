"""The README's examples ("From Feast and from Python"), run as written against a
running featstore: each block marked ``<!-- readme-example: NAME -->`` is executed with
its server address replaced by the test server's, and every ``print(x)  # expected``
line must print the expected text."""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

import pytest

import compat_store

README = Path(__file__).resolve().parents[2] / "README.md"


def example(name: str) -> str:
    text = README.read_text()
    m = re.search(rf"<!-- readme-example: {name} -->\n```python\n(.*?)```", text, re.S)
    assert m, f"README has no example {name!r}"
    return m.group(1)


def expectations(code: str) -> list[str]:
    return [m.group(1).split(":")[0].strip() for m in re.finditer(r"print\(.*\)  # (.*)$", code, re.M)]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = compat_store.serve(tmp_path_factory.mktemp("readme"))
    yield s
    s.stop()


@pytest.mark.parametrize("name", ["feast", "client"])
def test_readme_example_runs(name, server, tmp_path, monkeypatch):
    code = example(name).replace("http://127.0.0.1:7070", server.url)
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, f"README:{name}", "exec"), {"__name__": "readme_example"})
    printed = out.getvalue().splitlines()
    wanted = expectations(code)
    assert len(printed) == len(wanted), printed
    for got, want in zip(printed, wanted):
        assert got == want, (got, want)
    assert os.getcwd() == str(tmp_path)
