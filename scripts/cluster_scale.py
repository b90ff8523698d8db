"""Measure what decides how an encode job scales past one machine, on a real loopback Ray cluster
(a head and a second node, ``ray start`` each, 1 CPU each by default) with the tiny random model:

- peak memory (VmHWM) of the driver and of every encoder actor, per corpus size: it must stay flat
  (the driver holds receipts, never vectors; an actor holds one window of one piece);
- driver CPU seconds per row (user + system of the driver process alone: the cluster is separate);
- rows/s, driver bytes per row (the receipts it receives), manifest bytes per shard.

    PYTHONPATH=. python scripts/cluster_scale.py --rows 100000 1000000 --json scale.json

Each size is one fresh ``embedpipe encode --runner ray --ray-address HEAD`` process; the figures
are printed as a table and written as JSON. docs/scaling.md ("Sizing a 1-billion-row job") extrapolates them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from embedpipe.testing.models import save_tiny_bert  # noqa: E402
from embedpipe.testing.services import RAY_ENV, ray_head, ray_node  # noqa: E402

WORDS = "the a cat dog bird fish tree house car road river city water fire sun moon star book word red green".split()


def write_corpus(path: Path, rows: int) -> Path:
    """Short varied texts (4-10 words), written in row groups of 50k rows."""
    with pq.ParquetWriter(path, pa.schema({"id": pa.string(), "text": pa.string()})) as writer:
        for start in range(0, rows, 50_000):
            stop = min(rows, start + 50_000)
            texts = [" ".join(WORDS[(i * k + k) % len(WORDS)] for k in range(1, 5 + i % 7)) for i in range(start, stop)]
            writer.write_table(pa.table({"id": [f"doc-{i}" for i in range(start, stop)], "text": texts}))
    return path


def high_water_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def actor_pids() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"ShardWriter" in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def measure(rows: int, corpus: Path, model: Path, head, work: Path, env: dict, rows_per_shard: int) -> dict:
    out = work / f"v{rows}"
    command = [sys.executable, "-m", "embedpipe", "encode", str(corpus), "--model", str(model), "--out", str(out),
               "--runner", "ray", "--ray-address", head.gcs_address, "--rows-per-shard", str(rows_per_shard)]
    peaks, driver_peak, stop = {}, [0], threading.Event()
    started = time.monotonic()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def sample():
        while not stop.is_set():
            driver_peak[0] = max(driver_peak[0], high_water_kb(process.pid))
            for pid in actor_pids():
                peaks[pid] = max(peaks.get(pid, 0), high_water_kb(pid))
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, _, usage = os.wait4(process.pid, 0)
    wall = time.monotonic() - started
    stop.set()
    sampler.join()
    stdout, stderr = process.stdout.read(), process.stderr.read()
    if not stdout.strip():
        raise SystemExit(f"encode of {rows} rows failed:\n{stderr[-3000:]}")
    manifest = json.loads((out / "manifest.json").read_text())
    receipt_bytes = sum(len(json.dumps({**s, "number": 0, "attempt": "0" * 8, "skipped_known": 0,
                                        "skipped_blank": 0})) for s in manifest["shards"])
    manifest_bytes = (out / "manifest.json").stat().st_size
    base = len(json.dumps({**manifest, "shards": []}, indent=2))
    return {
        "rows": rows, "wall_s": round(wall, 1), "encode_s": manifest["seconds"],
        "rows_per_s": manifest["rows_per_second"], "shards": len(manifest["shards"]),
        "nodes": len({s["node_id"] for s in manifest["shards"]}),
        "driver_peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "driver_peak_rss_sampled_mb": round(driver_peak[0] / 1024, 1),
        "actor_peak_rss_mb": sorted(round(v / 1024, 1) for v in peaks.values()),
        "driver_cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "driver_cpu_us_per_row": round(1e6 * (usage.ru_utime + usage.ru_stime) / rows, 2),
        "driver_bytes_per_row": round(receipt_bytes / rows, 4),
        "manifest_bytes": manifest_bytes,
        "manifest_bytes_per_shard": round((manifest_bytes - base) / len(manifest["shards"]), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--cpus-per-node", type=int, default=1)
    parser.add_argument("--rows-per-shard", type=int, default=100_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="embedpipe-scale-"))
    model = save_tiny_bert(work / "tiny-bert", WORDS)
    env = {**RAY_ENV, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "EMBEDPIPE_CACHE": str(work / "cache")}
    results = []
    with ray_head(work, cpus=args.cpus_per_node, env=env) as head, \
            ray_node(head, work, cpus=args.cpus_per_node, env=env):
        subprocess.run([sys.executable, "-c", "from embedpipe.encode.encoder import EncoderSpec, prepare; "
                        f"prepare(EncoderSpec(model={str(model)!r}))"], env=env, check=True)   # export once
        for rows in args.rows:
            corpus = write_corpus(work / f"c{rows}.parquet", rows)
            results.append(measure(rows, corpus, model, head, work, env, args.rows_per_shard))
            print(json.dumps(results[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    subprocess.run(["rm", "-rf", str(work)])


if __name__ == "__main__":
    main()
