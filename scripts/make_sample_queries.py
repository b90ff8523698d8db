"""Build retrieval queries and qrels for the bundled sample corpus from WordNet's own lemmas.

    apt-get install wordnet-base     # WordNet 3.0 database files in /usr/share/wordnet
    python scripts/make_sample_queries.py /usr/share/wordnet

The sample corpus (embedpipe/data/sample_corpus.parquet) holds WordNet glosses with ids like
"noun02084071" (part of speech + synset offset). A query is the synset's lemmas, as in
/work/shared/data/wordnet_ret_queries.parquet ("dog, domestic dog, Canis familiaris"); its one
relevant document is that synset's gloss. Every third sample row gives a query: 100 queries, 10 per
class. Writes embedpipe/data/sample_queries.parquet (id, text) and sample_qrels.parquet
(query_id, doc_id, relevance).
"""

import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

DATA = Path(__file__).resolve().parent.parent / "embedpipe" / "data"
POS_FILES = {"noun": "data.noun", "verb": "data.verb"}


def lemmas(wordnet_dir: Path, pos: str, offsets: set[str]) -> dict[str, list[str]]:
    """{offset: [lemma, ...]} read from WordNet's data.POS file (format: wndb(5WN))."""
    found = {}
    with open(wordnet_dir / POS_FILES[pos], encoding="latin-1") as f:
        for line in f:
            if line.startswith(" "):  # the license header
                continue
            fields = line.split(" ")
            if fields[0] in offsets:
                count = int(fields[3], 16)
                found[fields[0]] = [fields[4 + 2 * i].replace("_", " ") for i in range(count)]
    return found


def main(wordnet_dir: str) -> None:
    corpus = pq.read_table(DATA / "sample_corpus.parquet", columns=["id"]).column("id").to_pylist()
    chosen = corpus[::3]
    by_pos: dict[str, set[str]] = {}
    for doc_id in chosen:
        by_pos.setdefault(doc_id[:4], set()).add(doc_id[4:])
    names = {pos + offset: words for pos, offsets in by_pos.items()
             for offset, words in lemmas(Path(wordnet_dir), pos, offsets).items()}
    missing = [d for d in chosen if d not in names]
    if missing:
        raise SystemExit(f"{len(missing)} sample ids are not in {wordnet_dir}: {missing[:3]}")
    query_ids = [f"sq{i}" for i in range(len(chosen))]
    pq.write_table(pa.table({"id": query_ids, "text": [", ".join(names[d]) for d in chosen]}),
                   DATA / "sample_queries.parquet")
    pq.write_table(pa.table({"query_id": query_ids, "doc_id": chosen,
                             "relevance": pa.array([1] * len(chosen), pa.int32())}), DATA / "sample_qrels.parquet")
    print(f"wrote {len(chosen)} queries and qrels to {DATA}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/usr/share/wordnet")
