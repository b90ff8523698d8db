"""`embedpipe classify` and `embedpipe predict`: options in, library call, output.

    $ embedpipe classify train.parquet --test test.parquet --pooling cls,mean,max,pooler --finetune
    $ embedpipe classify train.parquet --save-model clf && embedpipe predict clf new.parquet --out preds.parquet
"""

from __future__ import annotations

import json

import click

from ..encode.pooling import POOLINGS
from .options import user_errors


def _names(allowed, option: str):
    def convert(ctx, param, text: str) -> tuple[str, ...]:
        names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
        bad = [n for n in names if n not in allowed]
        if not names or bad:
            raise click.BadParameter(f"{', '.join(bad) or 'nothing'} is not one of: {', '.join(allowed)}",
                                     param_hint=option)
        return names
    return convert


def _optional_names(allowed, option: str):
    names = _names(allowed, option)
    return lambda ctx, param, text: None if text is None else names(ctx, param, text)


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
@click.option("--test", default=None, metavar="TEST.parquet",
              help="Labeled test file [default: hold out --test-fraction].")
@click.option("--test-fraction", type=float, default=0.2, show_default=True,
              help="Share of TRAIN held out (stratified by label) when there is no --test.")
@click.option("--label-column", default="label", show_default=True)
@click.option("--text-column", default="text", show_default=True)
@click.option("--pooling", "poolings", default="cls,mean", show_default=True,
              callback=_names(list(POOLINGS), "--pooling"),
              help=f"Poolings to probe, comma-separated, from: {', '.join(POOLINGS)}.")
@click.option("--head", "heads", default="linear,mlp", show_default=True,
              callback=_names(["linear", "mlp", "attention"], "--head"),
              help="linear: logistic regression (scikit-learn); mlp: DistilBERT's head, "
                   "Linear(dim,dim)+ReLU+dropout+Linear (torch); both on frozen vectors; attention: a learned "
                   "query over the last layer's frozen token states, then the mlp head.")
@click.option("--layers", default="last", show_default=True, callback=_layers,
              help="Layers to probe: last, all (0 = embeddings .. the last), or numbers like -1,-2,6 "
                   "(negative from the end); every pooling x layer comes from one encoder pass.")
@click.option("--finetune", is_flag=True,
              help="Also fine-tune the whole encoder, for cls and/or mean among --pooling.")
@click.option("--finetune-heads", default=None, callback=_optional_names(["pooler", "pre_classifier", "linear"],
                                                                          "--finetune-heads"),
              help="Fine-tuning heads, crossed with cls/mean: pooler (BERT's dense+tanh), pre_classifier "
                   "(DistilBERT's Linear+ReLU+dropout), linear (dropout+classifier) "
                   "[default: cls with pooler, mean with linear].")
@click.option("--epochs", type=int, default=3, show_default=True, help="Fine-tuning epochs.")
@click.option("--lr", "learning_rate", type=float, default=5e-5, show_default=True,
              help="Fine-tuning learning rate (AdamW).")
@click.option("--batch-size", "finetune_batch_size", type=int, default=32, show_default=True,
              help="Fine-tuning texts per step.")
@click.option("--train-limit", type=int, default=None,
              help="Use at most this many training rows (a stratified sample) for every method.")
@click.option("--finetune-train-limit", type=int, default=None,
              help="Fine-tune on at most this many of the training rows (a stratified sample); probes use all.")
@click.option("--seeds", type=int, default=3, show_default=True,
              help="Repeats of each probe (mlp initialisations, or MTEB experiments); reports mean ± std.")
@click.option("--finetune-seeds", type=int, default=1, show_default=True,
              help="Fine-tuning runs per pooling (each a full training).")
@click.option("--samples-per-label", type=int, default=None, metavar="K",
              help="MTEB mode: each repeat trains the probes on K rows per label, sampled as MTEB does.")
@click.option("--mlp-epochs", type=int, default=30, show_default=True,
              help="Most epochs of the mlp and attention heads.")
@click.option("--val-fraction", type=float, default=0.1, show_default=True,
              help="Share of the training rows held out to pick epochs (early stopping); 0 = none.")
@click.option("--patience", type=int, default=5, show_default=True,
              help="mlp / attention: stop after this many epochs without a better validation accuracy.")
@click.option("--token-states-limit-mb", type=float, default=2048, show_default=True,
              help="attention: refuse to cache more token states (float16) than this.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default="auto", show_default=True,
              help="Where fine-tuning runs.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
              help="Fine-tuning: bf16 autocast (auto: where the GPU or CPU has native bf16) or fp32.")
@click.option("--model", default=None, metavar="NAME_OR_DIR",
              help="Hugging Face model id or local directory [default: bundled all-MiniLM-L6-v2].")
@click.option("--max-length", type=int, default=None, help="Tokens per text [default: the model's limit].")
@click.option("--normalize/--no-normalize", default=True, show_default=True, help="L2-normalize the frozen vectors.")
@click.option("--threads", type=int, default=None, help="CPU threads [default: all cores].")
@click.option("--out", default=None, type=click.Path(),
              help="Report directory [default: TRAIN_STEM.classify].")
@click.option("--save-model", default=None, type=click.Path(),
              help="Save the best probe here (safetensors + json) for `embedpipe predict`.")
@click.option("--overwrite", is_flag=True, help="Replace an existing report (and --save-model) directory.")
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
    from ..classify import ClassifyJob, run_classify
    from ..classify.report import markdown

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
@click.option("--text-column", default="text", show_default=True)
@click.option("--threads", type=int, default=None, help="onnxruntime threads [default: all cores].")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@user_errors
def predict_cmd(model_dir, data, out, text_column, threads, overwrite, as_json):
    """Label every text of DATA (parquet) with the probe saved in MODEL_DIR by `classify --save-model`,
    encoding the texts exactly as its training texts were."""
    from ..classify import predict_file

    summary = predict_file(model_dir, data, out, text_column=text_column, overwrite=overwrite, threads=threads)
    click.echo(json.dumps(summary) if as_json else
               f"wrote {summary['rows']} predictions to {summary['out']} ({summary['texts_per_s']:.0f} texts/s)")
