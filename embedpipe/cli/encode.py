"""`embedpipe export` and `embedpipe encode`: options in, library call, output.

    $ embedpipe export --model ./my-model --quantize int8
    $ embedpipe encode corpus.parquet --pooling cls --out corpus.cls.vectors
"""

from __future__ import annotations

import json

import click

from ..encode.encoder import EncoderSpec
from ..encode.job import EncodeJob
from .options import device_options, export_options, from_config, model_option, prompt_options, user_errors


@click.command("export")
@model_option(EncoderSpec)
@click.option("--out", type=click.Path(), default=None,
              help="Write the export here [default: the export cache, $EMBEDPIPE_CACHE or ~/.cache/embedpipe].")
@export_options(EncoderSpec)
@click.option("--trust-remote-code", is_flag=True,
              help="Allow a model that ships its own Python code (auto_map) to run it while exporting; "
                   "`encode` then uses the cached export without running any model code.")
@user_errors
def export_cmd(model, out, optimize, quantize, trust_remote_code):
    """Export a model to ONNX with optimum (once; `encode` reuses the cached export).

    The graph outputs token hidden states, so one export serves every pooling; BERT's pooler
    weights are saved beside it for --pooling pooler.
    """
    from ..model.export import check_export_out, ensure_exported
    from ..model.resolve import local_model_dir, resolve_model

    if out is not None:  # refused before the model is hashed (ensure_exported checks the resolved model again)
        check_export_out(out, local_model_dir(model))
    exported = ensure_exported(resolve_model(model), optimize=optimize, quantize=quantize, out=out,
                               trust_remote_code=trust_remote_code)
    if recipe := exported.info.get("quantize_recipe"):
        click.echo(f"int8 for {exported.info['quantize_isa']}: {recipe['describe']}; mean cosine "
                   f"{recipe['cosine_mean']:.4f} to fp32 on {recipe['sample_texts']} sample texts", err=True)
    click.echo(f"{exported.onnx_path}")


@click.command("encode")
@click.argument("corpus")
@from_config(EncoderSpec, "pooling",
             help="How token vectors become one vector per text: 'model' is the model's own "
                  "(its sentence-transformers config; mean for a plain transformers model).")
@model_option(EncoderSpec)
@from_config(EncodeJob, "text_column", help="Column of the texts to encode.")
@from_config(EncodeJob, "id_column", help="Column of the ids (BEIR's _id where the corpus has no id column).")
@from_config(EncodeJob, "title_column",
             help="Join this column before the text, with a space, as BEIR does [default: none; "
                  "a BEIR folder's title].")
@from_config(EncodeJob, "format", "--format", "file_format",
             help="Read CORPUS as this format [default: from the file names: .parquet, .jsonl, .csv, .arrow, "
                  "each may end in .gz/.zst/.bz2].")
@from_config(EncodeJob, "out", type=click.Path(),
             help="Vector directory: a path (on a cluster, one every node sees) or a URL (s3://bucket/vectors, "
                  "gs://...; workers write their shards there) [default: CORPUS_STEM.POOLING.vectors in the "
                  "working directory].")
@from_config(EncoderSpec, "max_length", type=int,
             help="Truncate texts to this many tokens [default: the model's limit].")
@from_config(EncodeJob, "batch_size", type=int, help="Texts per onnxruntime call (also capped by a token budget).")
@from_config(EncoderSpec, "normalize", "--normalize/--no-normalize",
             help="L2-normalize vectors (cosine similarity = inner product).")
@export_options(EncoderSpec)
@from_config(EncodeJob, "runner",
             help="ray: a pool of encoder actors on Ray, each writing its own shards; local: in this "
                  "process, no Ray; auto: Ray when --ray-address names a cluster or there are 50,000+ rows "
                  "to encode, else local (an embedded Ray's ~7 s start-up would be most of a smaller job).")
@from_config(EncodeJob, "ray_address", metavar="ADDR", envvar="RAY_ADDRESS",
             help="Join this Ray cluster (also read from $RAY_ADDRESS, as `ray job submit` sets it); one "
                  "that does not answer within 15 s ($EMBEDPIPE_RAY_CONNECT_TIMEOUT_S) is an error "
                  "[default: start an embedded local Ray on 127.0.0.1 when the Ray runner runs].")
@from_config(EncodeJob, "workers", type=int, help="Encoder actors [default: one per --threads CPUs of the cluster].")
@from_config(EncodeJob, "threads", type=int,
             help="onnxruntime threads per worker [default: all cores for local; 1-4 per Ray actor].")
@from_config(EncodeJob, "inflight", type=int,
             help="onnxruntime calls in flight at once per worker, sharing its --threads cores and one copy of "
                  "the model [default: one per thread, at most 2].")
@from_config(EncodeJob, "empty_text",
             help="Null or blank texts: stop before encoding anything, or leave those rows out "
                  "(counted in the manifest as skipped_rows).")
@from_config(EncodeJob, "dtype", help="Vector dtype on disk: int8/uint8 with per-dimension calibration ranges, "
             "binary/ubinary one sign bit per dimension, as sentence-transformers' quantize_embeddings.")
@from_config(EncodeJob, "truncate_dim", type=int, metavar="N",
             help="Matryoshka: keep the first N dimensions, then normalize (checked against the dimensions "
                  "the model declares; others warn) [default: all].")
@from_config(EncodeJob, "ranges", type=click.Path(), metavar="PATH",
             help="int8/uint8 calibration ranges: an int8/uint8 vector directory of the same encoder, or a .npy "
                  "of shape (2, dim) [default: learned from --calibration-rows of the corpus, then kept in "
                  "the manifest].")
@from_config(EncodeJob, "calibration_rows", type=int,
             help="int8/uint8 without --ranges: how many corpus rows (a spread sample) are encoded to learn the "
                  "per-dimension ranges.")
@from_config(EncodeJob, "rescore_dtype",
             help="binary/ubinary: also keep the vectors in this dtype beside the bits, which `index` then "
                  "rescores with (int8 ranges learned as for --dtype int8) [default: none].")
@from_config(EncodeJob, "rows_per_shard", type=int,
             help="Rows per output shard, the unit a rerun resumes from (cut smaller on Ray so the pool "
                  "balances the work).")
@from_config(EncodeJob, "overwrite", is_flag=True,
             help="Rebuild the output from scratch, e.g. for another model or pooling, or after texts changed "
                  "(the old output stays until the new one is complete).")
@from_config(EncodeJob, "ray_dashboard", is_flag=True,
             help="Start the embedded local Ray's dashboard (on 127.0.0.1) [default: no dashboard].")
@from_config(EncodeJob, "chunk_tokens", type=int, metavar="N",
             help="Cut each text into windows of at most N tokens (the prompt and special tokens included; at "
                  "most --max-length), ending at a sentence or word boundary, one row per window: id DOC#K, "
                  "with doc_id, chunk and the character span start/end [default: one row per text, truncated].")
@from_config(EncodeJob, "chunk_overlap", type=int, metavar="M",
             help="Tokens each window shares with the one before (less than the window's text tokens).")
@prompt_options("texts (the model's document prompt by default, if it has one; the manifest records it)", EncoderSpec)
@device_options(EncoderSpec)
@from_config(EncodeJob, "gpus_per_actor", type=float,
             help="GPUs each Ray encoder actor asks for (0.5: two actors share a GPU; 0: CPU actors); Ray places "
                  "them on GPU nodes; a cluster without GPUs is an error.")
@user_errors
def encode_cmd(corpus, pooling, model, text_column, id_column, title_column, file_format, out, max_length,
               batch_size, normalize, optimize, quantize, runner, ray_address, workers, threads, empty_text, dtype,
               rows_per_shard, overwrite, ray_dashboard, chunk_tokens, chunk_overlap, prompt_name, prompt,
               device, backend, precision, gpus_per_actor, inflight, **compact):
    """Encode the texts of CORPUS into a vector directory: parquet shards of (id, vector) and a
    manifest.json written last. CORPUS is parquet, JSON Lines, CSV or a Hugging Face save_to_disk
    directory: a file, a directory or a glob of them (compressed too), a pyarrow/fsspec URL, or a
    BEIR dataset folder (its corpus.jsonl: _id, title + " " + text).

    Run it again and it does only what is left: over a complete output of the same config it does
    nothing; after the corpus grew it encodes only the new ids, adding shards; after a kill it
    reuses the shards it had finished. Ids must be unique. Ids removed or texts changed under the
    same id are not re-encoded: --overwrite rebuilds. Another encoder config needs --overwrite.
    Texts longer than the model's limit are truncated (counted in the manifest as truncated_rows),
    unless --chunk-tokens cuts them into windows, each encoded as a text of its own.
    An --out that is, holds or lies inside the corpus or the model directory is refused before
    anything is written.

    The model is used as its authors meant it: a sentence-transformers model's own pooling, its
    modules after pooling (Dense, LayerNorm, Normalize) and its document prompt; a named --pooling
    replaces only the pooling step. `search` then puts the model's query prompt before queries.

    \b
    Poolings:
      model          the model's own (sentence-transformers config; mean otherwise)
      cls            first token ([CLS])
      mean           mean of the tokens (masked)
      max            per-dimension max of the tokens
      mean_sqrt_len  sum of the tokens / sqrt(length)
      weightedmean   position-weighted mean (later tokens weigh more)
      lasttoken      last real token
      pooler         BERT's pooler: tanh(dense([CLS])), weights from the checkpoint
    """
    from ..encode.job import encode_corpus

    spec = EncoderSpec(model=model, pooling=pooling, normalize=normalize, max_length=max_length,
                       optimize=optimize, quantize=quantize, prompt_name=prompt_name, prompt=prompt,
                       device=device, backend=backend, precision=precision)
    job = EncodeJob(corpus=corpus, out=out, spec=spec, text_column=text_column, id_column=id_column,
                    title_column=title_column, format=file_format,
                    runner=runner, ray_address=ray_address, workers=workers, threads=threads, inflight=inflight,
                    batch_size=batch_size, empty_text=empty_text, dtype=dtype, rows_per_shard=rows_per_shard,
                    overwrite=overwrite, ray_dashboard=ray_dashboard, gpus_per_actor=gpus_per_actor,
                    chunk_tokens=chunk_tokens, chunk_overlap=chunk_overlap, **compact)
    result = encode_corpus(job)
    manifest = result.manifest
    last_run = manifest.get("last_run", {})
    click.echo(json.dumps({"out": str(result.out), "up_to_date": result.up_to_date, "rows": manifest["rows"],
                           "dim": manifest["dim"],
                           "encoded_rows": 0 if result.up_to_date else last_run.get("encoded_rows"),
                           "reused_rows": manifest["rows"] if result.up_to_date else last_run.get("reused_rows"),
                           "skipped_rows": manifest["skipped_rows"], "truncated_rows": manifest.get("truncated_rows"),
                           "seconds": 0 if result.up_to_date else manifest["seconds"],
                           "rows_per_second": manifest["rows_per_second"],
                           # chunked: rows are chunks; how many documents they came from
                           **({"documents": sum(s.get("documents", 0) for s in manifest["shards"])}
                              if manifest["encoder"].get("chunk_tokens") else {})}))


