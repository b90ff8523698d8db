"""`embedpipe index`, `embedpipe search` and `embedpipe evaluate`: options in, library call, output.

    $ embedpipe index corpus.vectors --out corpus.index --max-memory 4GB
    $ embedpipe search corpus.index "a small dog" -k 5 --corpus corpus.parquet
    $ embedpipe evaluate corpus.index --queries q.parquet --qrels qrels.parquet --json
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from ..errors import BadInput
from ..formats.beir import beir_files
from ..formats.index_dir import INFO_FILE
from ..formats.reports import mteb_result, trec_run_lines, trec_tag
from ..fsio import check_output, check_output_file, file_sha256, write_text_atomic
from ..index import IndexConfig, append_index, build_index, open_index
from ..retrieval.documents import DOC_SCORES, show_texts
from ..retrieval.evaluate import evaluate_with_run
from ..retrieval.search import corpus_columns, corpus_texts, query_encoder, search_file, search_texts
from ..storage.store import Store
from .options import device_options, from_config, prompt_options, user_errors

METRIC_LABELS = {"ndcg": "nDCG", "recall": "Recall", "mrr": "MRR"}


def _megabytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


@click.command("index")
@click.argument("vectors_dir", type=click.Path())
@click.option("--out", required=True, type=click.Path(), help="Index directory to write.")
@from_config(IndexConfig, "factory",
             help="'auto' (chosen for the corpus under --max-memory) or any FAISS factory string, e.g. 'IVF1024,Flat'.")
@from_config(IndexConfig, "metric", help="ip = inner product (cosine for normalized vectors); l2 = Euclidean distance.")
@from_config(IndexConfig, "max_memory", help="Memory the index may use, e.g. 4GB, 512MB.")
@from_config(IndexConfig, "target_recall", type=float,
             help="Recall@10 vs exact search that nprobe / efSearch are tuned to reach.")
@from_config(IndexConfig, "recall_margin", type=float,
             help="Tune to --target-recall plus this on the tuning queries, so that queries tuning did not see "
                  "reach the target too (the recall of a sample of queries is a noisy estimate).")
@from_config(IndexConfig, "ef_construction", type=int,
             help="HNSW graphs: the construction search width (wider builds slower, a better graph) "
                  "[default: 80 for --factory auto, FAISS's 40 for a named HNSW factory].")
@from_config(IndexConfig, "exact_store",
             help="Where the refine step reads exact vectors: auto = RAM when they fit --max-memory, else a "
                  "memory-mapped float16 store on local disk (exact.npy); none = as the factory says; "
                  "float16 / float32 = always re-rank candidates from a store of that type.")
@from_config(IndexConfig, "inverted_lists",
             help="Where an IVF index keeps its inverted lists (codes + ids): auto = RAM when they fit "
                  "--max-memory, else memory-mapped from index.ivfdata on disk (built in parts, merged on disk; "
                  "fast-scan codes become plain IVF-PQ); ram; disk.")
@from_config(IndexConfig, "runner",
             help="local = build in this process; ray = each vector shard added by a Ray task into a partial "
                  "index, merged here (IVF factories; a rerun after a kill reuses finished parts); "
                  "auto = ray when --ray-address or $RAY_ADDRESS names a cluster and the index has inverted "
                  "lists (IVF), else local.")
@from_config(IndexConfig, "ray_address", help="The Ray cluster to join for --runner ray (host:port or "
                                              "ray://host:port) [default: $RAY_ADDRESS, else an embedded local Ray].")
@from_config(IndexConfig, "tuning_vectors", "--tuning-queries", "tuning_queries", type=click.Path(),
             help="Sample queries to tune on instead of held-out corpus vectors: a queries parquet (id, text), "
                  "encoded like the corpus, or a vector directory. Better when queries look unlike the documents.")
@from_config(IndexConfig, "rescore", "--rescore/--no-rescore",
             help="int8 / binary vectors: rank the compact index's candidates by exact scores from the "
                  "rescoring vectors, read from disk (memory-mapped).")
@from_config(IndexConfig, "rescore_from", type=click.Path(), metavar="DIR",
             help="Vectors to rescore with: a float32/float16/int8 encode of the same corpus and encoder "
                  "(binary vectors need one) [default: int8 codes rescore themselves].")
@from_config(IndexConfig, "rescore_multiplier", type=int,
             help="Candidates taken from a compact index per hit wanted, then rescored.")
@click.option("--overwrite", is_flag=True, help="Replace an existing index directory (a full rebuild).")
@click.option("--append", is_flag=True,
              help="Add the vectors of shards the index at --out does not hold yet (after an incremental encode), "
                   "keeping its trained structure and search parameters; builds it when --out has no index yet.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="FAISS threads for training, adding and tuning [default: all cores].")
@click.option("--json", "as_json", is_flag=True, help="Print index.json instead of a summary.")
@prompt_options("--tuning-queries texts [default: the query prompt recorded with the vectors]", IndexConfig,
                ("tuning_prompt_name", "tuning_prompt"))
@device_options(IndexConfig, "--tuning-queries texts", backend=False, field="tuning_device")
@user_errors(flags={"tuning_vectors": "--tuning-queries", "tuning_prompt": "--prompt",
                    "tuning_prompt_name": "--prompt-name", "tuning_device": "--device"})
def index_cmd(vectors_dir, out, factory, metric, max_memory, target_recall, recall_margin, ef_construction,
              exact_store, inverted_lists, runner, ray_address, tuning_queries, overwrite, append, threads, as_json,
              prompt_name, prompt, device, **compact):
    """Build a FAISS index over the vectors in VECTORS_DIR (an `embedpipe encode` output)."""
    if append and overwrite:
        raise click.UsageError("--append extends the index and --overwrite rebuilds it; give one of them")
    config = IndexConfig(factory=factory, metric=metric, max_memory=max_memory, target_recall=target_recall,
                         recall_margin=recall_margin, ef_construction=ef_construction, exact_store=exact_store,
                         inverted_lists=inverted_lists, runner=runner, ray_address=ray_address,
                         tuning_vectors=tuning_queries,
                         tuning_prompt_name=prompt_name, tuning_prompt=prompt, tuning_device=device, **compact)
    appended = 0
    if append and Store.at(out).exists(INFO_FILE):   # a path or a URL
        before = (Store.at(out).read_json(INFO_FILE) or {}).get("n", 0)
        info = append_index(out, vectors_dir, threads=threads)
        appended = info["n"] - before
    else:
        info = build_index(vectors_dir, out, config, overwrite=overwrite, threads=threads)
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    if append and "appends" in info:
        click.echo(f"appended   {appended} vectors")
    click.echo(f"index      {info['factory']} over {info['n']} vectors of dimension {info['dim']} ({info['metric']})")
    recall = "n/a" if info.get("recall_at_10") is None else f"{info['recall_at_10']:.4f}"
    click.echo(f"search     {info['search_params'] or '(exact)'}: recall@10 {recall} vs exact search")
    click.echo(f"memory     {_megabytes(info['memory_bytes'])}"
               + (f" (+ {_megabytes(info['disk_bytes'])} read from disk to rescore)" if info.get("disk_bytes") else "")
               + f", built in {info['build_seconds']:.1f}s")
    if info.get("exact_store"):
        click.echo(f"refine     from {info['exact_store']['file']} ({info['exact_store']['dtype']}, "
                   f"{_megabytes(info['exact_store']['bytes'])} on disk, memory-mapped): {info['refine']['reason']}")
    if (info.get("inverted_lists") or {}).get("on") == "disk":
        click.echo(f"lists      in {info['inverted_lists']['file']} ({_megabytes(info['inverted_lists']['bytes'])} "
                   f"on disk, memory-mapped): {info['inverted_lists']['reason']}")
    click.echo(f"wrote      {out}")


@click.command("search")
@click.argument("index_dir", type=click.Path())
@click.argument("query", required=False)
@from_config(search_file, "k", "-k", type=click.IntRange(min=1), help="Hits per query.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--corpus", type=click.Path(),
              help="The corpus the index was built from (what `encode` reads): show each hit's text.")
@click.option("--queries", type=click.Path(), help="Queries parquet (id, text): search them all, write --out.")
@click.option("--out", type=click.Path(), help="Results parquet for --queries: query_id, rank, doc_id, score.")
@from_config(search_file, "overwrite", is_flag=True, help="Replace an existing --out file.")
@from_config(search_file, "mmap", "--mmap/--no-mmap",
             help="Memory-map the index file (opens a large index in milliseconds; pages are read as searches "
                  "touch them) instead of reading it whole first.")
@from_config(search_file, "doc_score", type=click.Choice(DOC_SCORES),
             help="Over an index of chunks (encode --chunk-tokens): rank documents by their best chunk's score (best), "
                  "the sum of their 2 or 3 best (sum2, sum3), or show the chunks themselves (chunks).")
@prompt_options("queries [default: the query prompt recorded with the vectors, the model's own]", search_file)
@device_options(search_file, "queries", backend=False)
# --corpus is read with the columns encode recorded, so a missing one is fixed where it was chosen.
@user_errors(flags={"k": "-k", "text_column": "encode's --text-column", "id_column": "encode's --id-column",
                    "title_column": "encode's --title-column", "format": "encode's --format"})
def search_cmd(index_dir, query, k, as_json, corpus, queries, out, overwrite, mmap, doc_score, prompt_name, prompt,
               device):
    """Search INDEX_DIR for QUERY (or every query of --queries) with the corpus's own encoder."""
    if (query is None) == (queries is None):
        raise click.UsageError("give either a QUERY text or --queries FILE (with --out)")
    if queries is not None and out is None:
        raise click.UsageError("--queries needs --out RESULTS.parquet")
    if queries is not None:
        summary = search_file(index_dir, queries, out, k, overwrite=overwrite, prompt_name=prompt_name, prompt=prompt,
                              mmap=mmap, device=device, doc_score=doc_score)
        click.echo(json.dumps(summary) if as_json else f"wrote {summary['queries']} x {k} hits to {out}")
        return
    if not query.strip():
        raise BadInput("the query text is empty")
    index = open_index(index_dir, mmap=mmap)
    hits = search_texts(index, [query], k, query_encoder(index, prompt_name, prompt, device), doc_score)[0]
    if corpus:
        show_texts(index, hits, lambda ids: corpus_texts(corpus, ids, **corpus_columns(index)))
    if as_json:
        click.echo(json.dumps({"query": query, "k": k, "hits": [h.as_dict() for h in hits]}, default=str))
        return
    for hit in hits:
        span = f"\t[{hit.span[0]}:{hit.span[1]}]" if hit.span else ""
        click.echo(f"{hit.rank}\t{hit.id}\t{hit.score:.4f}{span}" + (f"\t{hit.text}" if hit.text is not None else ""))


def _k_values(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise click.BadParameter(f"expected positive cut-offs like 10,100, got {text!r}", param_hint="--k")
    return values


def _compare(index_dir, others, queries, qrels, queries_columns, qrels_columns, plot, output_format) -> None:
    from ..retrieval.compare import compare_indexes, plot_quality

    rows = compare_indexes([index_dir, *others], queries, qrels, queries_columns=queries_columns,
                           qrels_columns=qrels_columns)
    if plot is not None:
        click.echo(f"wrote {plot_quality(rows, plot)}", err=True)
    if output_format == "json":
        click.echo(json.dumps(rows))
        return
    click.echo(f"{rows[0]['queries']} queries")
    click.echo(f"{'index':<28}{'dtype':>8}{'dim':>5}{'nDCG@10':>9}{'vs 1st':>8}{'R@10':>8}{'RAM B/vec':>10}"
               f"{'x less':>7}{'disk B/vec':>11}{'queries/s':>10}")
    for r in rows:
        name = Path(r["index"]).name[-27:]
        click.echo(f"{name:<28}{r['dtype']:>8}{r['dim']:>5}{r['ndcg_at_10']:>9.4f}{r['ndcg_vs_first']:>8.3f}"
                   f"{r['recall_at_10']:>8.4f}{r['ram_bytes_per_vector']:>10.0f}{r['ram_vs_first']:>7}"
                   f"{r['disk_bytes_per_vector']:>11.0f}{r['queries_per_second']:>10.0f}")


@click.command("evaluate")
@click.argument("index_dir", type=click.Path())
@click.option("--queries", type=click.Path(),
              help="Queries file: parquet (id, text) or JSON Lines (BEIR's queries.jsonl: _id, text).")
@click.option("--qrels", type=click.Path(),
              help="Qrels file: parquet (query_id, doc_id, relevance) or BEIR's tab-separated .tsv "
                   "(query-id, corpus-id, score, a header line).")
@click.option("--beir", "beir_dir", type=click.Path(), default=None,
              help="A BEIR dataset folder: its queries.jsonl and qrels/SPLIT.tsv (instead of --queries/--qrels).")
@click.option("--split", default="test", show_default=True,
              help="The qrels split of --beir (qrels/SPLIT.tsv); also the split named in --format mteb.")
@from_config(evaluate_with_run, "queries_columns", metavar="ID,TEXT",
             help="Column names of the queries file [default: id,text, or BEIR's _id,text].")
@from_config(evaluate_with_run, "qrels_columns", metavar="QUERY,DOC,GRADE",
             help="Column names of the qrels file [default: query_id,doc_id,relevance, or BEIR's "
                  "query-id,corpus-id,score].")
@from_config(evaluate_with_run, "k_values", "--k", "k_text", to_cli=lambda ks: ",".join(map(str, ks)),
             help="Cut-offs, comma-separated.")
@from_config(evaluate_with_run, "exact", "--exact/--no-exact",
             help="Also evaluate exact search over the same vectors (needs the vector directory).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (same as --format json).")
@click.option("--format", "output_format", type=click.Choice(["table", "json", "mteb", "trec"]), default="table",
              show_default=True,
              help="mteb: MTEB's result JSON (task, split, main_score, scores); trec: the index's run as a TREC "
                   "run file (QID Q0 DOCID RANK SCORE TAG).")
@click.option("--task-name", default=None,
              help="Task name in --format mteb [default: the BEIR folder's name, else the queries file's].")
@click.option("--language", "languages", multiple=True, default=["eng-Latn"], show_default=True,
              help="Language of the task in --format mteb, as MTEB names them (ISO 639-3 and script; repeatable).")
@click.option("--out", type=click.Path(), default=None, help="Write --format mteb/trec/json here instead of stdout.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
@click.option("--compare", "compare", multiple=True, type=click.Path(), metavar="INDEX_DIR",
              help="Other indexes of the same corpus (other precisions, truncate_dims): a table of nDCG@10, "
                   "recall@10, bytes per vector in RAM and on disk, and queries/s, INDEX_DIR first (repeatable).")
@click.option("--plot", type=click.Path(), default=None,
              help="With --compare: write a plot of nDCG@10 against bytes per vector (png).")
@from_config(evaluate_with_run, "doc_score", type=click.Choice(DOC_SCORES),
             help="Over an index of chunks (encode --chunk-tokens): rank documents by their best chunk's score (best), "
                  "the sum of their 2 or 3 best (sum2, sum3), or show the chunks themselves (chunks). "
                  "Qrels name documents, so the numbers compare with BEIR's.")
@prompt_options("queries [default: the query prompt recorded with the vectors, the model's own]", evaluate_with_run)
@device_options(evaluate_with_run, "queries", backend=False)
@user_errors(flags={"k_values": "--k"})
def evaluate_cmd(index_dir, queries, qrels, beir_dir, split, queries_columns, qrels_columns, k_text, exact, as_json,
                 output_format, task_name, languages, out, overwrite, compare, plot, doc_score, prompt_name, prompt,
                 device):
    """nDCG@10 (main score), Recall@k and MRR@k of INDEX_DIR on BEIR-style queries and qrels:
    --queries and --qrels, or a BEIR dataset folder with --beir DIR --split test.

    Without 10 among --k, the main score is nDCG at the cut-off nearest 10 (the smaller on a tie)."""
    if beir_dir is not None:
        if queries is not None or qrels is not None:
            raise click.UsageError("give either --beir DIR or --queries and --qrels")
        queries, qrels = beir_files(beir_dir, split)
    elif queries is None or qrels is None:
        raise click.UsageError("give --queries and --qrels, or a BEIR folder with --beir DIR")
    if as_json:
        output_format = "json"
    if out is not None:
        out = check_output(out, {"index": index_dir, "queries": queries, "qrels": qrels})
        check_output_file(out, overwrite)
    k_values = _k_values(k_text)
    if compare:
        _compare(index_dir, compare, queries, qrels, queries_columns, qrels_columns, plot, output_format)
        return
    started = time.monotonic()
    report, run = evaluate_with_run(index_dir, queries, qrels, k_values, exact=exact,
                                    queries_columns=queries_columns, qrels_columns=qrels_columns,
                                    prompt_name=prompt_name, prompt=prompt, device=device, doc_score=doc_score)
    if output_format == "table":
        columns = [c for c in ("index", "exact") if c in report]
        click.echo(f"{report['queries']} queries, {report['factory']} {report['search_params']}".rstrip())
        click.echo(f"{'metric':<12}" + "".join(f"{c:>10}" for c in columns))
        for name in report["index"]:
            kind, k = name.split("_at_")
            click.echo(f"{METRIC_LABELS[kind] + '@' + k:<12}" + "".join(f"{report[c][name]:>10.4f}" for c in columns))
        return
    if output_format == "json":
        text = json.dumps(report)
    elif output_format == "trec":
        text = "\n".join(trec_run_lines(run, tag=trec_tag(Path(index_dir).name)))
    else:
        name = task_name or (Path(beir_dir).resolve().name if beir_dir else Path(queries).name.split(".")[0])
        result = mteb_result(name, split, report["index"], report["main_score"],
                             evaluation_time=round(time.monotonic() - started, 3), languages=languages,
                             dataset_revision="qrels-sha256:" + file_sha256(qrels)[:16])
        text = json.dumps(result, indent=2)
    if out is None:
        click.echo(text)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out, text + "\n")
        click.echo(f"wrote {out}", err=True)
