"""Benchmark the index beyond one machine's memory (issue 26): the same budgeted index built in one process
and on Ray (embedded local Ray here: the parallel build's parts as tasks), side by side, over synthetic
vectors drawn around the real WordNet gloss vectors (bench_index.py's `synthesize`, written as vector
shards on disk, never all in RAM), searched by the 2000 real WordNet queries (held out: no build saw them).

Per build: wall seconds, peak RSS of the driver and of each Ray worker (the kernel's VmHWM, sampled from
/proc), index bytes (what search holds in RAM) and exact-store bytes (memory-mapped from disk) against the
float vectors' bytes, recall@10 of the real queries against exact search, queries/s against exact search
(Flat over the same vectors, in RAM when they fit --flat-max-bytes, else streamed from the shards),
timed side by side in one run, with the load average beside each.

    OMP_WAIT_POLICY=PASSIVE python scripts/bench_index_scale.py --real bench_out/wordnet.vectors \\
        --queries /work/shared/data/wordnet_ret_queries.parquet --rows 2000000 --max-memory 1GB --out bench_out/scale
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

import faiss  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from bench_index import synthesize  # noqa: E402

from embedpipe.encode.encoder import TextEncoder  # noqa: E402
from embedpipe.formats.vectors import open_vectors  # noqa: E402
from embedpipe.index import open_index  # noqa: E402
from embedpipe.index.params import ExactTopK, apply_search_params  # noqa: E402
from embedpipe.testing.services import RayNode  # noqa: E402

log = logging.getLogger("bench_index_scale")


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def peak_rss(pid: int) -> int:
    """The kernel's high-water mark of a process's resident memory, in bytes (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class RssWatch:
    """Samples the driver's and every Ray task worker's peak RSS while a build runs."""

    def __init__(self, process: subprocess.Popen):
        # an embedded Ray's raylet and workers are the driver's descendants; other users' Ray workers are not
        self.tree, self.driver, self.workers, self.stop = RayNode(process), process.pid, {}, threading.Event()
        self.driver_peak = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.is_set():
            self.driver_peak = max(self.driver_peak, peak_rss(self.driver))
            for pid, command in self.tree.descendants():
                if command.startswith(b"ray::"):  # this build's Ray task workers (ray::IDLE between tasks)
                    self.workers[pid] = max(self.workers.get(pid, 0), peak_rss(pid))
            time.sleep(0.5)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def build(vectors: Path, out: Path, runner: str, args) -> dict:
    """`embedpipe index` as its own process (its peak RSS is the driver's)."""
    if (out / "index.json").exists():
        log.info("reusing %s", out)
        return {"reused": True, **json.loads((out / "index.json").read_text())}
    command = [sys.executable, "-m", "embedpipe", "index", str(vectors), "--out", str(out), "--factory", args.factory,
               "--max-memory", args.max_memory, "--runner", runner, "--json", "--overwrite"]
    started, load_before = time.perf_counter(), loadavg()
    log.info("building %s: %s", runner, " ".join(command[3:]))
    with open(out.with_suffix(".log"), "w") as errors:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True)
        with RssWatch(process) as watch:
            stdout, _ = process.communicate()
    if process.returncode:
        raise SystemExit(f"{runner} build failed; see {out.with_suffix('.log')}")
    info = json.loads(stdout)
    info["bench"] = {"wall_seconds": round(time.perf_counter() - started, 1), "load_before": load_before,
                     "load_after": loadavg(), "driver_peak_rss": watch.driver_peak,
                     "worker_peak_rss": sorted(watch.workers.values(), reverse=True)[:8]}
    (out / "bench.json").write_text(json.dumps(info["bench"], indent=2))
    return info


def exact_truth(vectors_dir: Path, queries: np.ndarray, k: int = 10) -> tuple[list[list], float]:
    """Each query's exact top-k ids, streamed over the shards, and the seconds it took."""
    vectors = open_vectors(vectors_dir)
    exact, ids, start = ExactTopK(queries, k, "ip"), [], 0
    started = time.perf_counter()
    for batch_ids, batch in vectors.iter_batches(262_144):
        exact.add(batch, start)
        ids.append(batch_ids.to_pylist())
        start += len(batch)
    seconds = time.perf_counter() - started
    flat_ids = [i for chunk in ids for i in chunk]
    return [[flat_ids[r] for r in row if r >= 0] for row in exact.result()[1]], seconds


def measure(index_dir: Path, queries: np.ndarray, truth: list[list], rounds: int) -> dict:
    loaded = open_index(index_dir, mmap=True)
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        _, rows = loaded.search(queries, 10)
        best = min(best, time.perf_counter() - started)
    found = [loaded.ids_of(r) for r in rows]
    recall = float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))
    return {"recall_at_10": round(recall, 4), "qps": round(len(queries) / best, 1), "load": loadavg()}


NPROBES = [8, 10, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256]


def tuned_on_real_queries(index_dir: Path, queries: np.ndarray, truth: list[list], rounds: int, aim: float) -> dict:
    """What `--tuning-queries` gives: nprobe tuned on the first half of the real queries (the smallest
    reaching ``aim``), recall@10 and queries/s measured on the second half, which tuning did not see."""
    loaded = open_index(index_dir, mmap=True)
    half = len(queries) // 2
    trials = {}
    for nprobe in NPROBES:
        apply_search_params(loaded.index, f"nprobe={nprobe}")
        _, rows = loaded.search(queries[:half], 10)
        trials[nprobe] = round(recall_of(loaded, rows, truth[:half]), 4)
        if trials[nprobe] >= aim:
            break
    picked = min((p for p, r in trials.items() if r >= aim), default=max(trials))
    apply_search_params(loaded.index, f"nprobe={picked}")
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        _, rows = loaded.search(queries[half:], 10)
        best = min(best, time.perf_counter() - started)
    return {"nprobe": picked, "tuning_half_trials": trials,
            "recall_at_10": round(recall_of(loaded, rows, truth[half:]), 4),
            "qps": round((len(queries) - half) / best, 1), "load": loadavg()}


def recall_of(loaded, rows: np.ndarray, truth: list[list]) -> float:
    return float(np.mean([len(set(loaded.ids_of(r)) & set(t)) / len(t) for r, t in zip(rows, truth)]))


def flat_qps(vectors_dir: Path, queries: np.ndarray, rounds: int, max_bytes: int, streamed_seconds: float) -> dict:
    vectors = open_vectors(vectors_dir)
    if vectors.rows * vectors.dim * 4 > max_bytes:
        return {"qps": round(len(queries) / streamed_seconds, 1), "how": "streamed from the shards", "load": loadavg()}
    flat = faiss.IndexFlatIP(vectors.dim)
    for _, batch in vectors.iter_batches(262_144):
        flat.add(batch)
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        flat.search(queries, 10)
        best = min(best, time.perf_counter() - started)
    return {"qps": round(len(queries) / best, 1), "how": "IndexFlatIP in RAM", "load": loadavg()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--real", required=True, help="the WordNet gloss vectors (embedpipe encode output)")
    parser.add_argument("--queries", required=True, help="wordnet_ret_queries.parquet")
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--factory", default="auto")
    parser.add_argument("--max-memory", default="1GB")
    parser.add_argument("--runners", default="local,ray")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--flat-max-bytes", type=int, default=4 * 10**9)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    vectors = synthesize(Path(args.real), out / f"syn{args.rows}.vectors", args.rows, seed=0, noise=0.1)
    texts = pq.read_table(args.queries).column("text").to_pylist()
    queries = TextEncoder.from_manifest(open_vectors(args.real).manifest, query=True).encode(texts)
    truth, streamed = exact_truth(vectors, queries)
    float_bytes = args.rows * queries.shape[1] * 4
    results = {"rows": args.rows, "dim": int(queries.shape[1]), "float_bytes": float_bytes,
               "max_memory": args.max_memory, "factory": args.factory,
               "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "exact_streamed_seconds": round(streamed, 1), "builds": {}}
    for runner in args.runners.split(","):
        index_dir = out / f"syn{args.rows}-{runner}.index"
        info = build(vectors, index_dir, runner, args)
        store = info.get("exact_store") or {}
        results["builds"][runner] = {
            "factory": info["factory"], "search_params": info["search_params"], "refine": info.get("refine"),
            "runner": info.get("runner"), "index_bytes": info["memory_bytes"], "store_bytes": store.get("bytes", 0),
            "index_share_of_floats": round(info["memory_bytes"] / float_bytes, 4),
            "tuning_recall_at_10": info["recall_at_10"], "build_seconds": info["build_seconds"],
            **(json.loads((index_dir / "bench.json").read_text()) if (index_dir / "bench.json").exists() else {}),
        }
    # side by side: exact search, then each index, in one run
    results["exact"] = flat_qps(vectors, queries, args.rounds, args.flat_max_bytes, streamed)
    for runner in results["builds"]:
        results["builds"][runner]["search"] = measure(out / f"syn{args.rows}-{runner}.index", queries, truth,
                                                      args.rounds)
        results["builds"][runner]["search"]["x_exact"] = round(
            results["builds"][runner]["search"]["qps"] / results["exact"]["qps"], 1)
        real = tuned_on_real_queries(out / f"syn{args.rows}-{runner}.index", queries, truth, args.rounds, 0.96)
        real["x_exact"] = round(real["qps"] / results["exact"]["qps"], 1)
        results["builds"][runner]["search_tuned_on_real_queries"] = real
    (out / f"scale-{args.rows}.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
