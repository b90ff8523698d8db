"""`embedpipe classify` and `embedpipe predict`: options in, library call, output.

    $ embedpipe classify train.parquet --test test.parquet --pooling cls,mean,max,pooler --finetune
    $ embedpipe classify train.parquet --save-model clf && embedpipe predict clf new.parquet --out preds.parquet
"""

from __future__ import annotations

import json

import click

from ..classify.job import ClassifyJob
from ..classify.merge import merge_reports
from ..classify.predict import predict_file
from .options import device_options, from_config, user_errors


def _layers(ctx, param, text: str):
    text = text.strip()
    if text in ("last", "all"):
        return text
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r} is not last, all or comma-separated layer numbers (e.g. -1,-2,6)",
                                 param_hint="--layers") from None


@click.command("classify")
@click.argument("train")
@from_config(ClassifyJob, "test", metavar="TEST.parquet",
             help="Labeled test file [default: hold out --test-fraction].")
@from_config(ClassifyJob, "test_fraction", type=float,
             help="Share of TRAIN held out (stratified by label) when there is no --test.")
@from_config(ClassifyJob, "label_column", help="Column of the class labels (TRAIN and TEST).")
@from_config(ClassifyJob, "text_column", help="Column of the texts (TRAIN and TEST).")
@from_config(ClassifyJob, "poolings", "--pooling", help="Poolings to probe.")
@from_config(ClassifyJob, "heads", "--head",
             help="linear: logistic regression (scikit-learn); mlp: DistilBERT's head, "
                  "Linear(dim,dim)+ReLU+dropout+Linear (torch); both on frozen vectors; attention: a learned "
                  "query over the last layer's frozen token states, then the mlp head.")
@from_config(ClassifyJob, "layers", callback=_layers,
             help="Layers to probe: last, all (0 = embeddings .. the last), or numbers like -1,-2,6 "
                  "(negative from the end); every pooling x layer comes from one encoder pass.")
@from_config(ClassifyJob, "finetune", is_flag=True,
             help="Also fine-tune the whole encoder, for cls and/or mean among --pooling.")
@from_config(ClassifyJob, "finetune_heads",
             help="Fine-tuning heads, crossed with cls/mean: pooler (BERT's dense+tanh), pre_classifier "
                  "(DistilBERT's Linear+ReLU+dropout), linear (dropout+classifier) "
                  "[default: cls with pooler, mean with linear].")
@from_config(ClassifyJob, "epochs", type=int, help="Fine-tuning epochs.")
@from_config(ClassifyJob, "learning_rate", "--lr", type=float, help="Fine-tuning learning rate (AdamW).")
@from_config(ClassifyJob, "finetune_batch_size", "--batch-size", type=int, help="Fine-tuning texts per step.")
@from_config(ClassifyJob, "train_limit", type=int,
             help="Use at most this many training rows (a stratified sample) for every method.")
@from_config(ClassifyJob, "finetune_train_limit", type=int,
             help="Fine-tune on at most this many of the training rows (a stratified sample); probes use all.")
@from_config(ClassifyJob, "seeds", type=int,
             help="Repeats of each probe (mlp initialisations, or MTEB experiments); reports mean ± std.")
@from_config(ClassifyJob, "finetune_seeds", type=int, help="Fine-tuning runs per pooling (each a full training).")
@from_config(ClassifyJob, "samples_per_label", type=int, metavar="K",
             help="MTEB mode: each repeat trains the probes on K rows per label, sampled as MTEB does.")
@from_config(ClassifyJob, "mlp_epochs", type=int, help="Most epochs of the mlp and attention heads.")
@from_config(ClassifyJob, "val_fraction", type=float,
             help="Share of the training rows held out to pick epochs (early stopping); 0 = none.")
@from_config(ClassifyJob, "patience", type=int,
             help="mlp / attention: stop after this many epochs without a better validation accuracy.")
@from_config(ClassifyJob, "token_states_limit_mb", type=float,
             help="attention: refuse to cache more token states (float16) than this.")
@from_config(ClassifyJob, "device",
             help="Where the frozen features are encoded (auto: a GPU when one is visible; mps: on the CPU) and "
                  "fine-tuning and the attention head run.")
@from_config(ClassifyJob, "precision",
             help="Fine-tuning: bf16 autocast (auto: where the GPU or CPU has native bf16) or fp32.")
@from_config(ClassifyJob, "model", metavar="NAME_OR_DIR",
             help="Hugging Face model id or local directory [default: bundled all-MiniLM-L6-v2].")
@from_config(ClassifyJob, "max_length", type=int, help="Tokens per text [default: the model's limit].")
@from_config(ClassifyJob, "chunk_tokens", type=int, metavar="N",
             help="Also probe whole documents: each text cut into windows of N tokens (as encode --chunk-tokens), "
                  "the mean of its chunk vectors (POOLING+chunks) beside its first chunk alone (POOLING+first).")
@from_config(ClassifyJob, "chunk_overlap", type=int, metavar="M", help="Tokens each window shares with the one before.")
@from_config(ClassifyJob, "normalize", "--normalize/--no-normalize", help="L2-normalize the frozen vectors.")
@from_config(ClassifyJob, "vector_dtype",
             help="Probe the vectors as `encode --dtype` stores them (int8 ranges from the training rows).")
@from_config(ClassifyJob, "truncate_dim", type=int, metavar="N",
             help="Probe the first N dimensions, renormalized (Matryoshka) [default: all].")
@from_config(ClassifyJob, "threads", type=int, help="CPU threads [default: all cores].")
@from_config(ClassifyJob, "out", type=click.Path(), help="Report directory [default: TRAIN_STEM.classify].")
@from_config(ClassifyJob, "save_model", type=click.Path(),
             help="Save the best probe here (safetensors + json) for `embedpipe predict`.")
@from_config(ClassifyJob, "overwrite", is_flag=True, help="Replace an existing report (and --save-model) directory.")
@click.option("--json", "as_json", is_flag=True, help="Print report.json instead of the table.")
@user_errors(flags={"poolings": "--pooling", "heads": "--head", "learning_rate": "--lr",
                    "finetune_batch_size": "--batch-size", "train": "TRAIN"})
def classify_cmd(as_json, **options):
    """Which pooling and which head classify TRAIN best? Trains probes on frozen pooled vectors
    (encoded once through the same ONNX path as `encode`, cached), optionally fine-tunes the whole
    encoder, and writes REPORT_DIR/report.json, report.md and accuracy.png.

    \b
    Bad input (missing label column, null labels, a single class, test labels unseen in
    training, fewer rows than classes) stops with one error line before any training.
    """
    from ..classify.report import markdown
    from ..classify.run import run_classify

    job = ClassifyJob(**options)
    report = run_classify(job)
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
        return
    click.echo(markdown(report).rstrip())
    click.echo(f"\nwrote {job.out_dir()}" +
               (f" and {report['saved_model']['path']}" if report["saved_model"] else ""))
    click.echo("\nVerdict:\n" + "\n".join(f"- {sentence}" for sentence in report["verdict"]))


@click.command("predict")
@click.argument("model_dir", type=click.Path())
@click.argument("data")
@click.option("--out", required=True, type=click.Path(), help="Predictions parquet: id, label, score.")
@from_config(predict_file, "text_column", help="Column of the texts to label.")
@from_config(predict_file, "threads", type=int, help="onnxruntime threads [default: all cores].")
@from_config(predict_file, "overwrite", is_flag=True, help="Replace an existing --out file.")
@device_options(predict_file, "texts", backend=False)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@user_errors
def predict_cmd(model_dir, data, out, text_column, threads, overwrite, as_json, device):
    """Label every text of DATA (parquet) with the probe saved in MODEL_DIR by `classify --save-model`,
    encoding the texts exactly as its training texts were."""
    summary = predict_file(model_dir, data, out, text_column=text_column, overwrite=overwrite, threads=threads,
                           device=device)
    click.echo(json.dumps(summary) if as_json else
               f"wrote {summary['rows']} predictions to {summary['out']} ({summary['texts_per_s']:.0f} texts/s)")


@click.command("classify-merge")
@click.argument("out", type=click.Path())
@click.argument("report_dirs", nargs=-1, required=True, type=click.Path())
@from_config(merge_reports, "overwrite", is_flag=True, help="Replace an existing OUT report directory.")
@user_errors
def classify_merge_cmd(out, report_dirs, overwrite):
    """Merge `classify` reports made on the same test rows (e.g. one run per fine-tuning head, side by
    side) into the report directory OUT: every method compared with the best and the verdict recomputed
    from their predictions. Reports on other test rows are refused (paired statistics need the same
    rows); a method in several reports is taken from the first."""
    report = merge_reports(out, list(report_dirs), overwrite=overwrite)
    click.echo(f"merged {len(report_dirs)} reports ({len(report['results'])} results) into {out}")
    click.echo("\nVerdict:\n" + "\n".join(f"- {sentence}" for sentence in report["verdict"]))
