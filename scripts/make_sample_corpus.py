"""Rebuild embedpipe/data/sample_corpus.parquet from the WordNet gloss classification set.

    python scripts/make_sample_corpus.py ../shared/data/wordnet_cls_train.parquet

Takes the first 30 glosses of each of 10 lexicographer classes (300 labeled rows: id, text, label).
WordNet 3.0 is (c) Princeton University, redistributed under its license (data/LICENSE-WordNet.txt).
"""

import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

CLASSES = ["noun.animal", "noun.food", "noun.plant", "noun.artifact", "noun.body",
           "noun.location", "verb.motion", "verb.communication", "verb.contact", "verb.creation"]
PER_CLASS = 30


def main(source: str) -> None:
    table = pq.read_table(source, columns=["id", "text", "label"])
    parts = [table.filter(pc.equal(table["label"], label)).slice(0, PER_CLASS) for label in CLASSES]
    sample = pa.concat_tables(parts)
    out = Path(__file__).resolve().parent.parent / "embedpipe" / "data" / "sample_corpus.parquet"
    pq.write_table(sample, out)
    print(f"wrote {sample.num_rows} rows to {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/wordnet_cls_train.parquet")
