"""A long-document retrieval set from the Python standard library's own docstrings (no download).

    python scripts/make_long_documents.py --out bench_out/stdlib_docs

Each document is one stdlib module's docstrings, as its source lays them out: the module's
docstring, then ``class Name:`` / ``def name(args):`` with each docstring, in source order (read
with ``ast``: nothing is imported). Documents shorter than --min-chars are left out, longer ones are
cut at --max-chars (at a line end). Each query is the first sentence of a function's or class's
docstring that starts past --past-chars characters into its document (beyond what a 256-token
model sees when it truncates) and occurs in no other document; its document is the only relevant
one. At most --per-doc queries per document, chosen at random (--seed), so every query answers
from the middle or the end of a long document.

Writes OUT/corpus.parquet (id, text), OUT/queries.parquet (id, text), OUT/qrels.parquet
(query_id, doc_id, relevance) and OUT/about.json (the Python version, counts, lengths).
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SKIP_DIRS = {"test", "tests", "idlelib", "lib2to3", "site-packages", "dist-packages", "turtledemo", "__pycache__",
             "ensurepip", "config-3", "tkinter"}
SENTENCE = re.compile(r"^(.+?[.!?])(\s|$)", re.S)


def stdlib_files(root: Path):
    for path in sorted(root.rglob("*.py")):
        parts = set(path.relative_to(root).parts[:-1])
        if not parts & SKIP_DIRS and not any(p.startswith("config-") for p in parts):
            yield path


def document(path: Path) -> tuple[str, list[tuple[int, str]]] | None:
    """(the module's docstrings as one text, [(character offset, docstring) of each def/class])."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return None
    lines, entries = [], []
    head = ast.get_docstring(tree)
    if head:
        lines.append(head.strip())
    for node in _in_order(tree):
        doc = ast.get_docstring(node)
        if not doc:
            continue
        if isinstance(node, ast.ClassDef):
            header = f"class {node.name}:"
        else:
            header = f"def {node.name}({ast.unparse(node.args)}):"
        offset = sum(len(line) + 2 for line in lines)
        lines.append(f"{header}\n{doc.strip()}")
        entries.append((offset + len(header) + 1, doc.strip()))
    return "\n\n".join(lines), entries


def _in_order(tree):
    """Function and class definitions in source order, nested ones after their parent."""
    nodes = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    return sorted(nodes, key=lambda n: (n.lineno, n.col_offset))


def first_sentence(doc: str) -> str | None:
    paragraph = " ".join(doc.split("\n\n")[0].split())
    match = SENTENCE.match(paragraph)
    sentence = match.group(1) if match else paragraph
    return sentence if 25 <= len(sentence) <= 200 and not sentence.startswith((">>>", ":", "..")) else None


def build(min_chars: int, max_chars: int, past_chars: int, per_doc: int, seed: int):
    root = Path(sysconfig.get_paths()["stdlib"])
    docs, candidates = {}, {}
    for path in stdlib_files(root):
        made = document(path)
        if made is None:
            continue
        text, entries = made
        if len(text) < min_chars:
            continue
        if len(text) > max_chars:
            text = text[: text.rfind("\n", 0, max_chars)]
        name = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        docs[name] = text
        candidates[name] = [(offset, s) for offset, d in entries
                            if past_chars <= offset < len(text) and (s := first_sentence(d))]
    # A query must name one document: its sentence occurs in no other (checked for the ones drawn).
    rng = np.random.default_rng(seed)
    queries, qrels = [], []
    for name in docs:
        found = candidates[name]
        taken = set()
        for i in rng.permutation(len(found)):
            offset, sentence = found[i]
            if sentence in taken or sum(sentence in t for t in docs.values()) != 1:
                continue
            taken.add(sentence)
            qid = f"{name}:q{len(queries)}"
            queries.append((qid, sentence, offset, len(docs[name])))
            qrels.append((qid, name))
            if len(taken) == per_doc:
                break
    return docs, queries, qrels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--min-chars", type=int, default=6000, help="leave out shorter documents")
    parser.add_argument("--max-chars", type=int, default=40_000, help="cut longer documents here")
    parser.add_argument("--past-chars", type=int, default=2000, help="queries answer from past this offset")
    parser.add_argument("--per-doc", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    docs, queries, qrels = build(args.min_chars, args.max_chars, args.past_chars, args.per_doc, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"id": list(docs), "text": list(docs.values())}), args.out / "corpus.parquet")
    pq.write_table(pa.table({"id": [q[0] for q in queries], "text": [q[1] for q in queries]}),
                   args.out / "queries.parquet")
    pq.write_table(pa.table({"query_id": [q for q, _ in qrels], "doc_id": [d for _, d in qrels],
                             "relevance": pa.array([1] * len(qrels), pa.int32())}), args.out / "qrels.parquet")
    lengths = np.array([len(t) for t in docs.values()])
    where = np.array([q[2] / q[3] for q in queries])
    about = {"python": sys.version.split()[0], "documents": len(docs), "queries": len(queries),
             "chars": {"mean": int(lengths.mean()), "median": int(np.median(lengths)), "max": int(lengths.max())},
             "query_position_in_document": {"mean": round(float(where.mean()), 3),
                                            "min": round(float(where.min()), 3)}}
    (args.out / "about.json").write_text(json.dumps(about, indent=2) + "\n")
    print(json.dumps(about))


if __name__ == "__main__":
    main()
