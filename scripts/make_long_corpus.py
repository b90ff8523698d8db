"""A generated corpus of longer texts for the encode benchmark: WordNet glosses joined into passages.

    python scripts/make_long_corpus.py --source ../shared/data/wordnet_ret_corpus.parquet \\
        --rows 2000 --out bench_out/long.parquet

Passage lengths follow a log-normal around --words words (52 words: about 85 tokens mean, like
product descriptions), with a tail beyond 256 tokens so truncation is exercised. Deterministic
(--seed). Columns: id (string), text.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def passages(glosses: list[str], rows: int, words: float, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    targets = np.clip(rng.lognormal(np.log(words), 0.55, size=rows), 8, 400).astype(int)
    out = []
    for target in targets:
        parts, count = [], 0
        while count < target:
            gloss = glosses[rng.integers(len(glosses))]
            parts.append(gloss[0].upper() + gloss[1:])
            count += len(gloss.split())
        out.append(". ".join(parts) + ".")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source",
                        default=str(Path(__file__).resolve().parents[2] / "shared/data/wordnet_ret_corpus.parquet"),
                        help="parquet with a text column of short texts to join")
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--words", type=float, default=52, help="median words per passage (52: about 85 tokens mean)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench_out/long.parquet")
    args = parser.parse_args()
    glosses = [t for t in pq.read_table(args.source, columns=["text"]).column(0).to_pylist() if t and t.strip()]
    texts = passages(glosses, args.rows, args.words, args.seed)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"id": [f"p{i}" for i in range(len(texts))], "text": texts}), args.out)
    words = np.array([len(t.split()) for t in texts])
    print(f"{len(texts)} passages, {words.mean():.0f} words mean (max {words.max()}) -> {args.out}")


if __name__ == "__main__":
    main()
