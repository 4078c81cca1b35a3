"""Shared fixtures for the Python tests: a featstore binary and servers it runs.

The binary comes from ``FEATSTORE_BIN`` (``tools/test.sh`` sets it to the one cargo just
built). Every server binds a free loopback port, runs in its own temporary directory and
is stopped when its fixture ends, so tests never depend on anything already running.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest


def featstore_bin() -> str:
    path = os.environ.get("FEATSTORE_BIN")
    if not path or not Path(path).is_file():
        raise RuntimeError("FEATSTORE_BIN must name a built featstore binary (tools/test.sh sets it)")
    return path


def featstore_cli(*args: str) -> str:
    """Runs the featstore CLI with ``args``; asserts it succeeded and returns stdout."""
    done = subprocess.run([featstore_bin(), *args], capture_output=True, text=True)
    assert done.returncode == 0, f"{args}: {done.stderr}"
    return done.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One featstore process on loopback; ``url`` is its base address."""

    def __init__(self, args: list[str], port: int, log: Path):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._log = open(log, "wb")
        self.proc = subprocess.Popen([featstore_bin(), *args], stdout=self._log, stderr=subprocess.STDOUT)
        self._wait_ready(log)

    def _wait_ready(self, log: Path, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"featstore exited with {self.proc.returncode}: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"featstore did not become ready within {timeout_s}s: {log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@pytest.fixture(scope="session")
def demo_server(tmp_path_factory):
    """The demo marketplace (``featstore demo``), served for the whole session."""
    root = tmp_path_factory.mktemp("demo")
    port = free_port()
    server = Server(["demo", "--dir", str(root / "store"), "--addr", f"127.0.0.1:{port}"], port, root / "server.log")
    yield server
    server.stop()
