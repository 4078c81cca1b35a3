"""The Python client benchmark (run by tools/bench-python.sh, which sets up the
environment): see that script for what is measured. Writes docs/benchmarks-python.md."""

from __future__ import annotations

import os
import platform
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BIN = os.environ["FEATSTORE_BIN"]
WORK = Path(os.environ.get("BENCH_DIR", "/tmp/featstore-bench-python"))
PRODUCTS = int(os.environ.get("BENCH_PRODUCTS", "5000"))
ITERS = int(os.environ.get("BENCH_ITERS", "2000"))
PORT_BASE = int(os.environ.get("BENCH_PORT_BASE", "18070"))
CANDIDATES = 500
P_FEATURES = 50
U_FEATURES = 10
USERS = 100
T0 = 1_700_000_000_000

procs: list[subprocess.Popen] = []


def stop_all(*_):
    for p in procs:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def pinned(cmd: list[str], cpu: int) -> list[str]:
    if (os.cpu_count() or 1) >= 2 and shutil.which("taskset"):
        return ["taskset", "-c", str(cpu), *cmd]
    return cmd


def percentiles(samples_ns: list[int]) -> tuple[float, float]:
    a = np.sort(np.array(samples_ns, dtype=np.float64)) / 1e6
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def measure_turns(fns: dict, iters: int, warmup: int, turns: int = 8) -> dict:
    """p50 and p99 per path of ``fns``, the paths taking turns in ``turns`` slices of
    ``iters / turns`` requests each, so that a disturbance of the shared machine falls on
    all of them alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict = {name: [] for name in fns}
    per_turn = max(1, iters // turns)
    for _ in range(turns):
        for name, fn in fns.items():
            out = samples[name]
            for _ in range(per_turn):
                t = time.perf_counter_ns()
                fn()
                out.append(time.perf_counter_ns() - t)
    return {name: (*percentiles(out), len(out)) for name, out in samples.items()}


def measure(fn, iters: int, warmup: int) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(iters):
        t = time.perf_counter_ns()
        fn()
        out.append(time.perf_counter_ns() - t)
    return percentiles(out)


def main() -> None:
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True)
    rng = np.random.default_rng(7)
    pf = [f"bp_f{i:02}" for i in range(P_FEATURES)]
    uf = [f"bu_f{i:02}" for i in range(U_FEATURES)]
    reg = []
    for names, et, group in ((pf, "product", "bench_products"), (uf, "user", "bench_users")):
        for n in names:
            reg.append(f'[[feature]]\nname = "{n}"\nentity_type = "{et}"\ngroup = "{group}"\nowner = "bench"\ndtype = "float32"\n')
    (WORK / "registry.toml").write_text("\n".join(reg))
    pvals = rng.random((PRODUCTS, P_FEATURES), dtype=np.float32)
    uvals = rng.random((USERS, U_FEATURES), dtype=np.float32)
    pids = [f"p{i}" for i in range(PRODUCTS)]
    uids = [f"u{i}" for i in range(USERS)]

    def csv(path: Path, ids, names, vals):
        with open(path, "w") as f:
            f.write("entity_id,event_time," + ",".join(names) + "\n")
            for i, row in zip(ids, vals):
                f.write(f"{i},{T0}," + ",".join(repr(float(x)) for x in row) + "\n")

    csv(WORK / "bench_products.csv", pids, pf, pvals)
    csv(WORK / "bench_users.csv", uids, uf, uvals)
    data = WORK / "store"
    subprocess.run([BIN, "apply", str(WORK / "registry.toml"), "--data", str(data)], check=True, capture_output=True)
    for g in ("bench_products", "bench_users"):
        subprocess.run([BIN, "load", "--group", g, "--input", str(WORK / f"{g}.csv"), "--data", str(data)], check=True, capture_output=True)

    fs_port, redis_port = PORT_BASE, PORT_BASE + 9
    log = open(WORK / "featstore.log", "wb")
    procs.append(subprocess.Popen(pinned([BIN, "serve", "--data", str(data), "--addr", f"127.0.0.1:{fs_port}"], 1), stdout=log, stderr=log))
    procs.append(
        subprocess.Popen(
            pinned(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(WORK)], 1),
            stdout=subprocess.DEVNULL,
        )
    )
    wait_port(fs_port)
    wait_port(redis_port)
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {0})

    import redis

    r = redis.Redis(host="127.0.0.1", port=redis_port)
    pipe = r.pipeline(transaction=False)
    for i, pid in enumerate(pids):
        pipe.set(f"p:{pid}", pvals[i].astype("<f4").tobytes())
    for i, uid in enumerate(uids):
        pipe.set(f"u:{uid}", uvals[i].astype("<f4").tobytes())
    pipe.execute()

    sys.path.insert(0, str(ROOT / "clients" / "python" / "src"))
    from featstore_client import Client

    requests_ = [(random.Random(s).choice(uids), random.Random(s).sample(pids, CANDIDATES)) for s in range(64)]
    results: dict[str, tuple[float, float, int]] = {}
    k = [0]

    def nxt():
        k[0] = (k[0] + 1) % len(requests_)
        return requests_[k[0]]

    client = Client(f"http://127.0.0.1:{fs_port}")
    names = uf + pf

    def fs_rank():
        u, ps = nxt()
        a = client.rank("product", ps, names, context={"user": u})
        m = np.stack([a.columns[n].values for n in pf], axis=1)
        assert m.shape == (CANDIDATES, P_FEATURES)

    # Correctness once: the same values as were loaded.
    u, ps = requests_[0]
    a = client.rank("product", ps, names, context={"user": u})
    idx = [int(p[1:]) for p in ps]
    assert np.array_equal(np.stack([a.columns[n].values for n in pf], axis=1), pvals[idx])

    def fs_rank_all():
        u, ps = nxt()
        a = client.rank("product", ps, names, context={"user": u})
        cols = [a.columns[n] for n in pf]
        m = np.stack([c.values for c in cols], axis=1)
        st = np.stack([c.status for c in cols], axis=1)
        et = np.stack([c.event_time for c in cols], axis=1)
        assert m.shape == st.shape == et.shape == (CANDIDATES, P_FEATURES)


    from featstore_client import decode_rank

    raw_answer = client._call("POST", "/v1/rank", {"context": {"user": u}, "candidates": {"entity_type": "product", "ids": ps}, "features": names}, accept="application/x-featstore-rank")[1]

    def fs_decode():
        a = decode_rank(raw_answer)
        np.stack([a.columns[n].values for n in pf], axis=1)


    def redis_mget():
        u, ps = nxt()
        vals = r.mget([f"u:{u}"] + [f"p:{p}" for p in ps])
        m = np.frombuffer(b"".join(vals[1:]), dtype="<f4").reshape(CANDIDATES, P_FEATURES)
        np.frombuffer(vals[0], dtype="<f4")
        assert m.shape == (CANDIDATES, P_FEATURES)

    results.update(
        measure_turns(
            {
                "featstore_client rank (binary, values into numpy)": fs_rank,
                "featstore_client rank, values + statuses + event times into numpy": fs_rank_all,
                "redis-py MGET of 501 packed rows, into numpy (values only)": redis_mget,
                "featstore_client: decoding one answer into the values matrix (no HTTP)": fs_decode,
            },
            ITERS,
            200,
        )
    )

    feast_iters = max(20, ITERS // 100)
    try:
        from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
        from feast.types import Float32
    except ImportError:
        FeatureStore = None  # noqa: N806
    if FeatureStore is not None:
        refs = [f"bench_users:{n}" for n in uf] + [f"bench_products:{n}" for n in pf]
        remote = WORK / "feast_remote"
        remote.mkdir()
        (remote / "feature_store.yaml").write_text(
            f"project: bench\nprovider: local\nregistry: {remote}/registry.db\nonline_store:\n  type: remote\n  path: http://127.0.0.1:{fs_port}\nentity_key_serialization_version: 3\n"
        )
        store = FeatureStore(repo_path=str(remote))

        def feast_remote():
            u, ps = nxt()
            d = store.get_online_features(features=refs, entity_rows={"user_id": [u] * CANDIDATES, "product_id": ps}).to_dict()
            np.array([d[n] for n in pf], dtype=np.float32).T

        results["Feast SDK -> featstore (remote online store), into numpy"] = (*measure(feast_remote, feast_iters, 10), feast_iters)

        rrepo = WORK / "feast_redis"
        rrepo.mkdir()
        (rrepo / "feature_store.yaml").write_text(
            f"project: bench\nprovider: local\nregistry: {rrepo}/registry.db\nonline_store:\n  type: redis\n  connection_string: 127.0.0.1:{redis_port}\noffline_store:\n  type: file\nentity_key_serialization_version: 3\n"
        )
        import pandas as pd

        src = rrepo / "empty.parquet"
        pd.DataFrame({"product_id": pd.Series([], dtype="string"), "event_timestamp": pd.Series([], dtype="datetime64[ns, UTC]")}).to_parquet(src)
        fsrc = FileSource(path=str(src), timestamp_field="event_timestamp")
        product = Entity(name="product", join_keys=["product_id"], value_type=ValueType.STRING)
        user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING)
        fvp = FeatureView(name="bench_products", entities=[product], schema=[Field(name=n, dtype=Float32) for n in pf], source=fsrc, online=True)
        fvu = FeatureView(name="bench_users", entities=[user], schema=[Field(name=n, dtype=Float32) for n in uf], source=fsrc, online=True)
        rstore = FeatureStore(repo_path=str(rrepo))
        rstore.apply([product, user, fvp, fvu])
        ts = pd.Timestamp(T0, unit="ms", tz="UTC")
        dfp = pd.DataFrame(pvals, columns=pf)
        dfp.insert(0, "product_id", pids)
        dfp["event_timestamp"] = ts
        rstore.write_to_online_store("bench_products", dfp)
        dfu = pd.DataFrame(uvals, columns=uf)
        dfu.insert(0, "user_id", uids)
        dfu["event_timestamp"] = ts
        rstore.write_to_online_store("bench_users", dfu)

        def feast_redis():
            u, ps = nxt()
            d = rstore.get_online_features(features=refs, entity_rows={"user_id": [u] * CANDIDATES, "product_id": ps}).to_dict()
            np.array([d[n] for n in pf], dtype=np.float32).T

        u, ps = requests_[0]
        d = rstore.get_online_features(features=refs, entity_rows={"user_id": [u] * CANDIDATES, "product_id": ps}).to_dict()
        assert np.allclose(np.array([d[n] for n in pf], dtype=np.float32).T, pvals[idx])
        results["Feast SDK -> Redis (Feast's redis online store, in process), into numpy"] = (*measure(feast_redis, feast_iters, 10), feast_iters)
    stop_all()
    write_report(results)


def write_report(results) -> None:
    import featstore_client

    lines = [
        "# Python client benchmark",
        "",
        "Written by `tools/bench-python.sh`. One ranking read: 1 user (10 float32 features) +",
        f"{CANDIDATES} products x {P_FEATURES} float32 features, from {PRODUCTS} products, end to end into a",
        "numpy matrix, one request at a time over loopback (closed loop, one connection). The",
        "server (featstore or redis-server) runs on CPU 1, the Python process on CPU 0. The",
        "first four paths take turns, 8 slices each, so machine noise falls on all alike.",
        "",
        "| path | p50 ms | p99 ms | requests |",
        "|---|---:|---:|---:|",
    ]
    for name, (p50, p99, n) in results.items():
        lines.append(f"| {name} | {p50:.2f} | {p99:.2f} | {n} |")
    fs_all = results.get("featstore_client rank, values + statuses + event times into numpy")
    mget = results.get("redis-py MGET of 501 packed rows, into numpy (values only)")
    if fs_all and mget:
        verdict = lambda ours, theirs: "ahead" if ours < theirs else "behind"  # noqa: E731
        lines += [
            "",
            f"featstore (values, statuses and event times) against the packed-row MGET, this run:"
            f" p50 {fs_all[0] / mget[0]:.2f}x ({verdict(fs_all[0], mget[0])}),"
            f" p99 {fs_all[1] / mget[1]:.2f}x ({verdict(fs_all[1], mget[1])}).",
        ]
    lines += [
        "",
        "- featstore's answer carries a status and an event time per value; the Redis",
        "  MGET carries only the values, packed by the writer in a layout the reader must know.",
        "  The client builds a column's status and event-time arrays when they are first read,",
        "  so the first featstore row pays for values only and the second for all three.",
        "- The Feast rows use the Feast SDK's `get_online_features` (entity rows in column",
        "  form, `to_dict()`), which builds protobuf values per cell. The Redis row is Feast's",
        "  redis online store called in process, a lower bound of Feast's Python feature",
        "  server (which adds an HTTP hop and JSON); the feature server itself was not measured.",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()},"
        f" numpy {np.__version__}, featstore_client {featstore_client.__version__}.",
        "",
    ]
    (ROOT / "docs" / "benchmarks-python.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: (stop_all(), sys.exit(1)))
    try:
        main()
    finally:
        stop_all()
