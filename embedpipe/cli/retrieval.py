"""`embedpipe index`, `embedpipe search` and `embedpipe evaluate`: options in, library call, output.

    $ embedpipe index corpus.vectors --out corpus.index --max-memory 4GB
    $ embedpipe search corpus.index "a small dog" -k 5 --corpus corpus.parquet
    $ embedpipe evaluate corpus.index --queries q.parquet --qrels qrels.parquet --json
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import BadInput
from ..formats.index_dir import INFO_FILE
from ..fsio import read_json
from ..index import IndexConfig, append_index, build_index, open_index
from ..retrieval.evaluate import evaluate
from ..retrieval.search import corpus_columns, corpus_texts, search_file, search_texts
from .options import user_errors

METRIC_LABELS = {"ndcg": "nDCG", "recall": "Recall", "mrr": "MRR"}


def _megabytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


@click.command("index")
@click.argument("vectors_dir", type=click.Path())
@click.option("--out", required=True, type=click.Path(), help="Index directory to write.")
@click.option("--factory", default="auto", show_default=True,
              help="'auto' (chosen for the corpus under --max-memory) or any FAISS factory string, "
                   "e.g. 'IVF1024,Flat'.")
@click.option("--metric", type=click.Choice(["ip", "l2"]), default="ip", show_default=True,
              help="ip = inner product (cosine for normalized vectors); l2 = Euclidean distance.")
@click.option("--max-memory", default="4GB", show_default=True, help="Memory the index may use, e.g. 4GB, 512MB.")
@click.option("--target-recall", type=float, default=0.95, show_default=True,
              help="Recall@10 vs exact search that nprobe / efSearch are tuned to reach.")
@click.option("--tuning-queries", type=click.Path(),
              help="Sample queries to tune on instead of held-out corpus vectors: a queries parquet (id, text), "
                   "encoded like the corpus, or a vector directory. Better when queries look unlike the documents.")
@click.option("--overwrite", is_flag=True, help="Replace an existing index directory (a full rebuild).")
@click.option("--append", is_flag=True,
              help="Add the vectors of shards the index at --out does not hold yet (after an incremental encode), "
                   "keeping its trained structure and search parameters; builds it when --out has no index yet.")
@click.option("--json", "as_json", is_flag=True, help="Print index.json instead of a summary.")
@user_errors(flags={"tuning_vectors": "--tuning-queries"})
def index_cmd(vectors_dir, out, factory, metric, max_memory, target_recall, tuning_queries, overwrite, append,
              as_json):
    """Build a FAISS index over the vectors in VECTORS_DIR (an `embedpipe encode` output)."""
    if append and overwrite:
        raise click.UsageError("--append extends the index and --overwrite rebuilds it; give one of them")
    config = IndexConfig(factory=factory, metric=metric, max_memory=max_memory, target_recall=target_recall,
                         tuning_vectors=tuning_queries)
    appended = 0
    if append and (Path(out) / INFO_FILE).exists():
        before = (read_json(Path(out) / INFO_FILE) or {}).get("n", 0)
        info = append_index(out, vectors_dir)
        appended = info["n"] - before
    else:
        info = build_index(vectors_dir, out, config, overwrite=overwrite)
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    if append and "appends" in info:
        click.echo(f"appended   {appended} vectors")
    click.echo(f"index      {info['factory']} over {info['n']} vectors of dimension {info['dim']} ({info['metric']})")
    click.echo(f"search     {info['search_params'] or '(exact)'}: recall@10 {info['recall_at_10']:.4f} vs exact search")
    click.echo(f"memory     {_megabytes(info['memory_bytes'])}, built in {info['build_seconds']:.1f}s")
    click.echo(f"wrote      {out}")


@click.command("search")
@click.argument("index_dir", type=click.Path())
@click.argument("query", required=False)
@click.option("-k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="Hits per query.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--corpus", type=click.Path(),
              help="The corpus the index was built from (what `encode` reads): show each hit's text.")
@click.option("--queries", type=click.Path(), help="Queries parquet (id, text): search them all, write --out.")
@click.option("--out", type=click.Path(), help="Results parquet for --queries: query_id, rank, doc_id, score.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
# --corpus is read with the columns encode recorded, so a missing one is fixed where it was chosen.
@user_errors(flags={"k": "-k", "text_column": "encode's --text-column", "id_column": "encode's --id-column",
                    "title_column": "encode's --title-column", "format": "encode's --format"})
def search_cmd(index_dir, query, k, as_json, corpus, queries, out, overwrite):
    """Search INDEX_DIR for QUERY (or every query of --queries) with the corpus's own encoder."""
    if (query is None) == (queries is None):
        raise click.UsageError("give either a QUERY text or --queries FILE (with --out)")
    if queries is not None and out is None:
        raise click.UsageError("--queries needs --out RESULTS.parquet")
    if queries is not None:
        summary = search_file(index_dir, queries, out, k, overwrite=overwrite)
        click.echo(json.dumps(summary) if as_json else f"wrote {summary['queries']} x {k} hits to {out}")
        return
    if not query.strip():
        raise BadInput("the query text is empty")
    index = open_index(index_dir)
    hits = search_texts(index, [query], k)[0]
    if corpus:
        texts = corpus_texts(corpus, {str(h.id) for h in hits}, **corpus_columns(index))
        for hit in hits:
            hit.text = texts.get(str(hit.id), "")
    if as_json:
        click.echo(json.dumps({"query": query, "k": k, "hits": [h.as_dict() for h in hits]}, default=str))
        return
    for hit in hits:
        click.echo(f"{hit.rank}\t{hit.id}\t{hit.score:.4f}" + (f"\t{hit.text}" if hit.text is not None else ""))


def _k_values(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise click.BadParameter(f"expected positive cut-offs like 10,100, got {text!r}", param_hint="--k")
    return values


@click.command("evaluate")
@click.argument("index_dir", type=click.Path())
@click.option("--queries", required=True, type=click.Path(), help="Queries parquet: id, text.")
@click.option("--qrels", required=True, type=click.Path(), help="Qrels parquet: query_id, doc_id, relevance.")
@click.option("--k", "k_text", default="10,100", show_default=True, help="Cut-offs, comma-separated.")
@click.option("--exact/--no-exact", default=True, show_default=True,
              help="Also evaluate exact search over the same vectors (needs the vector directory).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@user_errors(flags={"k_values": "--k"})
def evaluate_cmd(index_dir, queries, qrels, k_text, exact, as_json):
    """nDCG@10 (main score), Recall@k and MRR@k of INDEX_DIR on BEIR-style queries and qrels.

    Without 10 among --k, the main score is nDCG at the cut-off nearest 10 (the smaller on a tie)."""
    k_values = _k_values(k_text)
    report = evaluate(index_dir, queries, qrels, k_values, exact=exact)
    if as_json:
        click.echo(json.dumps(report))
        return
    columns = [c for c in ("index", "exact") if c in report]
    click.echo(f"{report['queries']} queries, {report['factory']} {report['search_params']}".rstrip())
    click.echo(f"{'metric':<12}" + "".join(f"{c:>10}" for c in columns))
    for name in report["index"]:
        kind, k = name.split("_at_")
        click.echo(f"{METRIC_LABELS[kind] + '@' + k:<12}" + "".join(f"{report[c][name]:>10.4f}" for c in columns))
