"""Benchmark the ids of an index at search (issue 26, "search / evaluate open it with bounded memory"):
open + 1000 searches + their hits' ids, at 1M-5M synthetic string ids, three ways side by side:

    old       what search did before ids.arrow: ids.parquet read whole, every id a Python object
    parquet   this code on an index written before ids.arrow (ids.parquet read whole into Arrow)
    mapped    this code on an index with ids.arrow: memory-mapped, only the hits' ids read

Each is measured in a fresh process (so one's memory never counts in another's): seconds to open,
seconds for the first batch of searches with ids, seconds for 1000 searches with ids (one query a
call, as a server answers them), peak RSS (VmHWM) and, after the searches, anonymous RSS (the heap:
what ids in RAM cost) and file-backed RSS (pages of mapped files, which the kernel can drop). The
index is IVF over 2-d vectors at nprobe 1, so the search itself costs little and the ids' cost shows;
the seconds spent in ``ids_of`` alone are given too.

    python scripts/bench_index_ids.py --rows 1000000 5000000 --out bench_out/ids
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa

from embedpipe.formats.index_dir import INFO_FILE, write_index_dir

SEARCHES = 1000
LISTS = 1024      # an IVF index searched at nprobe 1: a search costs little, so the ids' cost shows
VARIANTS = ("old", "parquet", "mapped")


def make_index(out: Path, rows: int) -> Path:
    """An index of ``rows`` 2-d vectors with ids like a real corpus's ("doc-0000012345")."""
    if (out / INFO_FILE).exists():
        return out
    vectors = np.random.default_rng(0).random((rows, 2), dtype=np.float32)
    index = faiss.index_factory(2, f"IVF{LISTS},Flat")
    index.train(vectors[:100_000])
    index.add(vectors)
    ids = pa.array(np.char.add("doc-", np.char.zfill(np.arange(rows).astype(str), 10)).astype(object), pa.string())
    write_index_dir(out, index, ids, lambda size: {"format_version": 1, "factory": f"IVF{LISTS},Flat", "metric": "l2",
                                                   "n": rows, "dim": 2, "memory_bytes": size,
                                                   "search_params": "nprobe=1"})
    return out


def memory() -> dict[str, int]:
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return {name: int(fields[key].split()[0]) * 1024 for name, key in
            (("peak_rss", "VmHWM"), ("rss_anon", "RssAnon"), ("rss_file", "RssFile"))}


def child(variant: str, index_dir: str) -> dict:
    """One variant's figures, in this (fresh) process."""
    import pyarrow.compute  # noqa: F401  (search and evaluate have it loaded: not a cost of the first lookup)

    from embedpipe.index import open_index
    from embedpipe.index.load import LoadedIndex

    base = memory()
    directory = Path(index_dir)
    if variant == "old":   # main before ids.arrow: ids.parquet read at open, then ids_of listed every id
        def ids_of_old(self, rows):
            if getattr(self, "_list", None) is None:
                self._list = self.ids.to_pylist()
            return [self._list[r] for r in rows if r >= 0]
        LoadedIndex.ids_of = ids_of_old
    queries = np.random.default_rng(1).random((SEARCHES, 2), dtype=np.float32)
    started = time.perf_counter()
    loaded = open_index(directory, mmap=True)
    opened = time.perf_counter()
    first = [loaded.ids_of(r) for r in loaded.search(queries[:1], 10)[1]]
    first_done = time.perf_counter()
    found, in_ids = 0, 0.0
    for query in queries:
        rows = loaded.search(query[None], 10)[1][0]
        before = time.perf_counter()
        found += len(loaded.ids_of(rows))
        in_ids += time.perf_counter() - before
    done = time.perf_counter()
    return {"variant": variant, "open_s": opened - started, "first_search_s": first_done - opened,
            "searches_s": done - first_done, "ids_of_s": in_ids, "hits": found, "first_hit": first[0][0],
            **{k: v for k, v in memory().items()}, "rss_at_start": base["peak_rss"]}


def with_layout(index_dir: Path, mapped: bool) -> None:
    """index.json naming ids.arrow or not (as an index written before it: the file then goes unread)."""
    info = json.loads((index_dir / INFO_FILE).read_text())
    info.pop("ids_file", None)
    (index_dir / INFO_FILE).write_text(json.dumps({**info, **({"ids_file": "ids.arrow"} if mapped else {})}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--out", type=Path, default=Path("bench_out/ids"))
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    results = []
    for rows in args.rows:
        index_dir = make_index(args.out / f"ids-{rows}", rows)
        for variant in VARIANTS:
            with_layout(index_dir, mapped=variant == "mapped")
            load = Path("/proc/loadavg").read_text().split()[0]
            run = subprocess.run([sys.executable, __file__, "--child", variant, str(index_dir)],
                                 capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
            figures = {"rows": rows, **json.loads(run.stdout), "load_before": float(load),
                       "load_after": float(Path("/proc/loadavg").read_text().split()[0])}
            results.append(figures)
            mib = {key: figures[key] / 2**20 for key in ("peak_rss", "rss_anon", "rss_file")}
            print(f"{rows:>9,} {variant:8} open {figures['open_s']:7.3f} s"
                  f"  first search+ids {figures['first_search_s']:7.3f} s"
                  f"  {SEARCHES} searches+ids {figures['searches_s']:6.3f} s (ids_of {figures['ids_of_s']:6.3f} s)"
                  f"  peak RSS {mib['peak_rss']:7.1f} MiB"
                  f"  anon {mib['rss_anon']:7.1f} MiB  file {mib['rss_file']:6.1f} MiB"
                  f"  (load {load} -> {figures['load_after']})", flush=True)
        with_layout(index_dir, mapped=True)
    ids_bytes = {r["rows"]: (args.out / f"ids-{r['rows']}" / "ids.arrow").stat().st_size for r in results}
    report = {"machine": platform.processor() or platform.machine(), "searches": SEARCHES, "results": results,
              "ids_arrow_bytes": ids_bytes}
    (args.out / "ids_bench.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
