"""Architecture x runner x min cosine: embedpipe's vectors against sentence-transformers' on the tiny
model of every supported architecture (embedpipe.testing.TINY_MODEL_VARIANTS), offline.

    python scripts/parity_architectures.py [--out table.md]

Each model is built here (random weights, a tokenizer of its own kind trained on a few words), saved
as a sentence-transformers model with its own pooling, modules and prompts, exported with optimum and
encoded with `encode_corpus` (no pooling named: the model's own) by the local runner and by the Ray
runner (one embedded Ray on loopback for all of them). Documents are compared with encode_document,
queries (the encoder the manifest records, with its query prompt) with encode_query.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

TEXTS = ["the cat sat on the mat", "a dog runs fast", "Hello, World!", "green trees by the river in the old city",
         "x", "Ünïcödé wörds and émojis 🙂 are fine", "the sun and the moon and the stars " * 20,
         "a small red book", "birds sing", "write a new word"]
QUERIES = ["a cat on a mat", "the river in the city", "red book", "birds"]


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    args = parser.parse_args()

    import ray
    from sentence_transformers import SentenceTransformer

    from embedpipe.encode import EncodeJob, encode_corpus
    from embedpipe.encode.encoder import EncoderSpec, TextEncoder
    from embedpipe.formats.vectors import open_vectors
    from embedpipe.testing.models import (
        ARCHITECTURES,
        LETTERS,
        TINY_MODEL_VARIANTS,
        save_tiny_sentence_transformer,
        save_tiny_transformer,
    )

    words = sorted({w.lower().strip(",.!?") for t in TEXTS + QUERIES for w in t.split()} - {""})
    root = Path(tempfile.mkdtemp(prefix="parity-"))
    os.environ.setdefault("EMBEDPIPE_CACHE", str(root / "cache"))
    corpus = root / "corpus.parquet"
    pq.write_table(pa.table({"id": list(range(len(TEXTS))), "text": TEXTS}), corpus)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    rows = []
    try:
        for architecture in ARCHITECTURES:
            variant = TINY_MODEL_VARIANTS[architecture]
            model = save_tiny_sentence_transformer(
                root / architecture / "st", save_tiny_transformer(root / architecture / "hf", architecture, words,
                                                                  LETTERS + ",.!?'-"), **variant)
            st = SentenceTransformer(str(model), device="cpu")
            prompts = variant.get("prompts", {})
            # sentence-transformers 5 fills in an empty 'document' prompt when loading and encode_document
            # then picks it; an E5-style model's authors meant 'passage' (what embedpipe applies).
            choice = {"prompt_name": "passage"} if "passage" in prompts and "document" not in prompts else {}
            documents, queries = st.encode_document(TEXTS, **choice), st.encode_query(QUERIES)
            row = {"architecture": architecture, "pooling": variant["pooling"],
                   "modules": ", ".join(m for m, on in (("Dense", variant.get("dense")),
                                                         ("LayerNorm", variant.get("layer_norm")),
                                                         ("Normalize", variant.get("normalize"))) if on) or "-",
                   "prompts": ", ".join(prompts) or "-", "dim": documents.shape[1]}
            for runner in ("local", "ray"):
                started = time.perf_counter()
                job = EncodeJob(str(corpus), out=str(root / architecture / runner), runner=runner, window=4,
                                batch_size=3, spec=EncoderSpec(model=str(model)))
                vectors_dir = open_vectors(encode_corpus(job).out)
                _, vectors = vectors_dir.read_all()
                assert vectors.shape == documents.shape, (architecture, runner, vectors.shape)
                row[runner] = float(row_cosines(vectors, documents).min())
                row[f"{runner}_s"] = time.perf_counter() - started
            query_vectors = TextEncoder.from_manifest(vectors_dir.manifest, query=True).encode(QUERIES)
            row["queries"] = float(row_cosines(query_vectors, queries).min())
            rows.append(row)
            print(f"{architecture}: local {row['local']:.7f}, ray {row['ray']:.7f}, queries {row['queries']:.7f}",
                  flush=True)
    finally:
        ray.shutdown()
    table = ["| architecture | own pooling | modules after pooling | prompts | dim | local: min cos vs encode_document "
             "| ray: min cos vs encode_document | queries: min cos vs encode_query |",
             "|---|---|---|---|---|---|---|---|"]
    table += [f"| {r['architecture']} | {r['pooling']} | {r['modules']} | {r['prompts']} | {r['dim']} | "
              f"{r['local']:.7f} | {r['ray']:.7f} | {r['queries']:.7f} |" for r in rows]
    print("\n".join(table))
    if args.out:
        args.out.write_text("\n".join(table) + "\n")


if __name__ == "__main__":
    main()
