"""The featstore store behind the Feast and Python-client tests: the registry of
``feast_repo/featstore_registry.toml`` and three batch groups, loaded with the CLI and
served on a free loopback port.

Event times are relative to now: ``NOW`` rows are fresh, ``OLD`` rows (three days ago) are
past the one-day TTL of ``user_score``.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from conftest import Server, featstore_bin, free_port

HERE = Path(__file__).resolve().parent
REGISTRY = HERE / "feast_repo" / "featstore_registry.toml"

NOW = int(time.time()) * 1000
OLD = NOW - 3 * 86_400_000
#: The fixed "now" of the golden answers' store (tests/python/golden).
GOLDEN_NOW = 1_700_000_000_000


def groups(now: int) -> dict[str, str]:
    """The CSV text of each group, with fresh rows at ``now``, old ones three days before."""
    old = now - 3 * 86_400_000
    return {
        "user_stats": (
            "entity_id,event_time,user_age,user_emb,user_score\n"
            f"u1,{now},31,1 0 0,0.5\n"
            f"u2,{old},45,0 1 0,0.9\n"
        ),
        "product_stats": (
            "entity_id,event_time,product_price,product_clicks,product_views,product_emb,product_name\n"
            f"p1,{now},10.5,5,100,1 1 0,red shoe\n"
            f"p2,{old},20,0,0,0 1 0,blue hat\n"
            f"p3,{now},,7,10,1 0 0,\n"
        ),
        "user_product_stats": (
            "entity_id,event_time,up_affinity\n"
            f"u1|p1,{now},0.7\n"
            f"u2|p2,{now},0.2\n"
        ),
    }


def build(root: Path, now: int = NOW) -> Path:
    """Creates the store under ``root`` (fresh rows at ``now``) and returns its data
    directory."""
    data = root / "store"

    def run(*args: str) -> None:
        r = subprocess.run([featstore_bin(), *args], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"featstore {' '.join(args)} failed ({r.returncode}): {r.stderr[-3000:]}")

    run("apply", str(REGISTRY), "--data", str(data))
    for group, text in groups(now).items():
        path = root / f"{group}.csv"
        path.write_text(text)
        run("load", "--group", group, "--input", str(path), "--data", str(data))
    return data


def serve(root: Path, now: int = NOW) -> Server:
    """Builds the store under ``root`` and serves it."""
    data = build(root, now)
    port = free_port()
    return Server(["serve", "--data", str(data), "--addr", f"127.0.0.1:{port}"], port, root / "server.log")
