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

Inverted lists in RAM vs on disk (index.ivfdata, memory-mapped): ``--runners`` entries ``NAME=FACTORY@LISTS``,
separated by ``;``, build FACTORY with ``--inverted-lists LISTS`` in one process. ``--synthetic`` stands in for the real
vectors where no WordNet encode is at hand: clustered random unit vectors and queries from the same
clusters (not indexed). Per index, besides the above: the on-disk bytes, the anonymous RAM a fresh
process holds after opening it and answering every query (RssAnon: what is its own, not page cache), and
queries/s on a cold first pass (the index's files evicted from the page cache first, posix_fadvise).

    OMP_WAIT_POLICY=PASSIVE python scripts/bench_index_scale.py --synthetic --rows 300000 --max-memory 20MB \\
        --runners "ram=IVF1024,PQ192x4fs,RFlat@ram;ram-plain=IVF1024,PQ192x4np,RFlat@ram;\\
                   disk=IVF1024,PQ192x4fs,RFlat@auto" --out bench_out/ondisk
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
    return status_bytes(pid, "VmHWM")


def status_bytes(pid: int | str, field: str) -> int:
    """A memory figure of /proc/PID/status (VmHWM, RssAnon: resident and not file-backed, RssFile), in bytes."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def evict(index_dir: Path) -> None:
    """Drop this index's files from the page cache (clean pages only; other processes' files untouched)."""
    for path in index_dir.iterdir():
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


SEARCH_RAM = """
import json, sys, numpy as np
from pathlib import Path
from embedpipe.index import open_index
def anon(field="RssAnon"):
    line = [l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(field + ":")][0]
    return int(line.split()[1]) * 1024
queries = np.load(sys.argv[2])
before = anon()
loaded = open_index(sys.argv[1], mmap=True)
opened = anon()
loaded.search(queries, 10)
print(json.dumps({"anon_after_open": opened - before, "anon_after_search": anon() - before,
                  "file_backed_after_search": anon("RssFile")}))
"""


def search_ram(index_dir: Path, queries_file: Path) -> dict:
    """The anonymous RAM a fresh process adds by opening the index and answering every query once."""
    result = subprocess.run([sys.executable, "-c", SEARCH_RAM, str(index_dir), str(queries_file)],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def cold_qps(index_dir: Path, queries: np.ndarray) -> dict:
    """Queries/s of one pass right after the index's files left the page cache."""
    loaded = open_index(index_dir, mmap=True)
    evict(index_dir)
    started = time.perf_counter()
    loaded.search(queries, 10)
    return {"qps": round(len(queries) / (time.perf_counter() - started), 1), "load": loadavg()}


def synthetic(out_dir: Path, rows: int, dim: int, seed: int = 0, queries: int = 2000) -> tuple[Path, np.ndarray]:
    """``rows`` clustered unit vectors (4,096 random centres, noise about as large as the centre) written
    as shards 100k at a time, and ``queries`` more from the same clusters, not indexed."""
    from embedpipe.formats.vectors import MANIFEST, VectorWriter

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4096, dim)).astype(np.float32)

    def draw(m: int) -> np.ndarray:
        x = centres[rng.integers(0, len(centres), m)] + rng.normal(size=(m, dim)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    held = draw(queries)
    if not ((out_dir / MANIFEST).exists() and open_vectors(out_dir).rows == rows):
        import pyarrow as pa

        with VectorWriter(out_dir, dim=dim, overwrite=True) as writer:
            for start in range(0, rows, 100_000):
                m = min(100_000, rows - start)
                writer.write(pa.array([f"syn{start + i:07d}" for i in range(m)]), draw(m))
            writer.publish({"model": {"name": "synthetic-clusters"}, "pooling": "mean", "normalize": True})
    return out_dir, held


class RssWatch:
    """Samples the driver's and every Ray task worker's peak RSS while a build runs."""

    def __init__(self, process: subprocess.Popen):
        # an embedded Ray's raylet and workers are the driver's descendants; other users' Ray workers are not
        self.tree, self.driver, self.workers, self.stop = RayNode(process), process.pid, {}, threading.Event()
        self.driver_peak = self.driver_anon_peak = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.is_set():
            self.driver_peak = max(self.driver_peak, peak_rss(self.driver))
            self.driver_anon_peak = max(self.driver_anon_peak, status_bytes(self.driver, "RssAnon"))
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
    """`embedpipe index` as its own process (its peak RSS is the driver's). ``runner``: local, ray, or
    NAME=FACTORY@LISTS (one process, that factory, --inverted-lists LISTS)."""
    if (out / "index.json").exists():
        log.info("reusing %s", out)
        return {"reused": True, **json.loads((out / "index.json").read_text())}
    factory, runner_name, lists = args.factory, runner, []
    if "=" in runner:
        factory, lists = runner.split("=", 1)[1].rsplit("@", 1)
        runner_name, lists = "local", ["--inverted-lists", lists]
    command = [sys.executable, "-m", "embedpipe", "index", str(vectors), "--out", str(out), "--factory", factory,
               "--max-memory", args.max_memory, "--runner", runner_name, *lists, "--json", "--overwrite"]
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
                     "driver_peak_anon_rss": watch.driver_anon_peak,
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
    parser.add_argument("--real", help="the WordNet gloss vectors (embedpipe encode output)")
    parser.add_argument("--queries", help="wordnet_ret_queries.parquet")
    parser.add_argument("--synthetic", action="store_true",
                        help="clustered random vectors and queries instead of --real / --queries")
    parser.add_argument("--dim", type=int, default=384, help="--synthetic vectors' dimension")
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
    if args.synthetic:
        vectors, queries = synthetic(out / f"clusters{args.rows}x{args.dim}.vectors", args.rows, args.dim)
    else:
        vectors = synthesize(Path(args.real), out / f"syn{args.rows}.vectors", args.rows, seed=0, noise=0.1)
        texts = pq.read_table(args.queries).column("text").to_pylist()
        queries = TextEncoder.from_manifest(open_vectors(args.real).manifest, query=True).encode(texts)
    queries_file = out / "queries.npy"
    np.save(queries_file, queries)
    truth, streamed = exact_truth(vectors, queries)
    float_bytes = args.rows * queries.shape[1] * 4
    results = {"rows": args.rows, "dim": int(queries.shape[1]), "float_bytes": float_bytes,
               "max_memory": args.max_memory, "factory": args.factory,
               "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "exact_streamed_seconds": round(streamed, 1), "builds": {}}
    runners = [r.strip() for r in args.runners.split(";" if "=" in args.runners else ",")]
    for runner in runners:
        index_dir = out / f"syn{args.rows}-{runner.split('=')[0]}.index"
        info = build(vectors, index_dir, runner, args)
        store = info.get("exact_store") or {}
        results["builds"][runner] = {
            "factory": info["factory"], "search_params": info["search_params"], "refine": info.get("refine"),
            "runner": info.get("runner"), "index_bytes": info["memory_bytes"], "store_bytes": store.get("bytes", 0),
            "inverted_lists": info.get("inverted_lists"),
            "index_share_of_floats": round(info["memory_bytes"] / float_bytes, 4),
            "tuning_recall_at_10": info["recall_at_10"], "build_seconds": info["build_seconds"],
            **(json.loads((index_dir / "bench.json").read_text()) if (index_dir / "bench.json").exists() else {}),
        }
    # side by side: exact search, then each index, in one run
    results["exact"] = flat_qps(vectors, queries, args.rounds, args.flat_max_bytes, streamed)
    for runner in results["builds"]:
        index_dir = out / f"syn{args.rows}-{runner.split('=')[0]}.index"
        results["builds"][runner]["search_ram"] = search_ram(index_dir, queries_file)
        results["builds"][runner]["search_cold"] = cold_qps(index_dir, queries)
        results["builds"][runner]["search"] = measure(index_dir, queries, truth, args.rounds)
        results["builds"][runner]["search"]["x_exact"] = round(
            results["builds"][runner]["search"]["qps"] / results["exact"]["qps"], 1)
        real = tuned_on_real_queries(index_dir, queries, truth, args.rounds, 0.96)
        real["x_exact"] = round(real["qps"] / results["exact"]["qps"], 1)
        results["builds"][runner]["search_tuned_on_real_queries"] = real
    (out / f"scale-{args.rows}.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
