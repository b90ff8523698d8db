"""Labeled corpora the classify tests share: words of a few clear topics, so a probe can learn them."""

import random

import pyarrow as pa
import pyarrow.parquet as pq

# Three classes with disjoint vocabularies (all in the tiny model's WordPiece vocab): well separated.
VOCAB = {"animal": "cat dog bird fish".split(), "sky": "sun moon star fire".split(),
         "place": "house road river city".split()}
FILLER = "the a of and in".split()


def labeled_rows(n_per_class: int, seed: int) -> dict:
    rng = random.Random(seed)
    texts, labels = [], []
    for label, words in VOCAB.items():
        for _ in range(n_per_class):
            picked = [rng.choice(words) for _ in range(rng.randint(3, 6))] + rng.sample(FILLER, 2)
            rng.shuffle(picked)
            texts.append(" ".join(picked))
            labels.append(label)
    return {"id": [f"r{seed}-{i}" for i in range(len(texts))], "text": texts, "label": labels}


def write(path, columns: dict):
    pq.write_table(pa.table(columns), path)
    return path
