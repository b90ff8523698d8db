"""fp32 against bf16 autocast for classify's fine-tuning on this CPU: the speed of a training step and
how far bf16 moves the logits, side by side in one run.

    python scripts/bench_finetune_precision.py --data ../shared/data/wordnet_cls_test.parquet \
        --threads 1 --steps 5 --out bench_out/finetune_precision.json

Reports whether the CPU has native bf16 (AVX512_BF16 / AMX; what ``--precision auto`` asks), the
median seconds of a forward + backward + AdamW step on batches of ``--batch-size`` texts (mean
pooling + pre_classifier head on the model, cls and mean alike cost the same) in fp32 and in bf16
autocast, interleaved, and on ``--eval-rows`` texts (same weights) the largest logit difference,
the share of rows whose argmax agrees (a barely trained head: a harsh test), and the cosine of the
mean-pooled last-layer states between the two precisions.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402
from transformers import AutoModel, AutoTokenizer  # noqa: E402

from embedpipe.classify.finetune import _pad, classifier_module, cpu_has_native_bf16  # noqa: E402
from embedpipe.model.resolve import resolve_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--eval-rows", type=int, default=256)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    path = str(resolve_model(args.model).path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    texts = pq.read_table(args.data, columns=["text"]).column(0).to_pylist()
    ids = tokenizer(texts[:max(args.eval_rows, args.batch_size * args.steps)], truncation=True,
                    max_length=128)["input_ids"]
    model = classifier_module(AutoModel.from_pretrained(path), "mean", "pre_classifier", 30)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    labels = torch.randint(0, 30, (args.batch_size,))
    seconds = {"fp32": [], "bf16": []}
    model.train()
    for step in range(args.steps):
        rows = list(range(step * args.batch_size, (step + 1) * args.batch_size))
        for precision in ("fp32", "bf16"):
            started = time.perf_counter()
            optimizer.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                logits = model(*_pad(ids, rows, tokenizer.pad_token_id))
            torch.nn.functional.cross_entropy(logits.float(), labels).backward()
            optimizer.step()
            seconds[precision].append(time.perf_counter() - started)
    model.eval()
    rows = list(range(args.eval_rows))
    batch = _pad(ids, rows, tokenizer.pad_token_id)
    with torch.inference_mode():
        fp32 = model(*batch).float()
        states32 = model.encoder(input_ids=batch[0], attention_mask=batch[1]).last_hidden_state.float()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = model(*batch).float()
            states16 = model.encoder(input_ids=batch[0], attention_mask=batch[1]).last_hidden_state.float()
    mask = batch[1].unsqueeze(-1).float()
    mean32, mean16 = (states32 * mask).sum(1) / mask.sum(1), (states16 * mask).sum(1) / mask.sum(1)
    cosine = torch.nn.functional.cosine_similarity(mean32, mean16, dim=1)
    result = {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "native_bf16": cpu_has_native_bf16(),
              "threads": args.threads, "batch_size": args.batch_size, "steps": args.steps,
              "step_seconds": {k: [round(s, 3) for s in v] for k, v in seconds.items()},
              "median_step_seconds": {k: round(statistics.median(v), 3) for k, v in seconds.items()},
              "bf16_over_fp32_time": round(statistics.median(seconds["bf16"]) / statistics.median(seconds["fp32"]), 2),
              "eval_rows": len(rows), "max_abs_logit_difference": float((fp32 - bf16).abs().max()),
              "argmax_agreement_untrained_head": float(np.mean((fp32.argmax(1) == bf16.argmax(1)).numpy())),
              "mean_pooled_cosine_min": float(cosine.min()), "mean_pooled_cosine_mean": float(cosine.mean())}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
