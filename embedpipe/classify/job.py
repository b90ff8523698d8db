"""ClassifyJob: what `classify` compares and on which data, checked when it is built.

    >>> job = ClassifyJob(train="train.parquet", poolings=["cls", "mean"], heads=["linear"])
    >>> job.out_dir(), job.poolings
    (PosixPath('train.classify'), ('cls', 'mean'))

A bad value raises ConfigError naming the field (the CLI and the pipeline spec map it to their own
option or key). Running the job is run.py's; the report directory it writes is report.py's.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from .. import checks
from ..encode.chunking import check_chunk_fields
from ..encode.encoder import EncoderSpec
from ..encode.pooling import POOLINGS, check_pooling
from ..errors import ConfigError
from ..formats.vectors import DTYPES
from .finetune import DEVICES, FINETUNE_HEADS, FINETUNE_POOLINGS, PRECISIONS
from .probes import PROBE_HEADS

# Fields that do not change the results: a report made with other values is still current.
NOT_IN_RESULT = ("out", "overwrite", "save_model", "threads", "device", "token_states_limit_mb")


@dataclass
class ClassifyJob:
    train: str = ""                          # labeled parquet file (text + label columns)
    test: str | None = None                  # test parquet; None = hold out test_fraction of train
    test_fraction: float = 0.2               # share of train held out (stratified) when test is None
    label_column: str = "label"              # column with the class labels (strings, ints or bools)
    text_column: str = "text"                # column with the texts
    poolings: tuple[str, ...] = checks.names_from(("cls", "mean"), POOLINGS)  # frozen-vector poolings to probe
    heads: tuple[str, ...] = checks.names_from(("linear", "mlp"), PROBE_HEADS)  # linear, mlp, attention (token states)
    layers: str | tuple[int, ...] = "last"   # last, all (0 = embeddings .. L) or hidden-state numbers (-1 = last)
    finetune: bool = False                   # also fine-tune the encoder, for each of poolings in cls/mean
    # fine-tuning heads: pooler, pre_classifier, linear; None = cls with pooler, mean with linear
    finetune_heads: tuple[str, ...] | None = checks.names_from(None, FINETUNE_HEADS)
    epochs: int = 3                          # fine-tuning epochs
    learning_rate: float = 5e-5              # fine-tuning AdamW peak learning rate
    finetune_batch_size: int = 32            # fine-tuning texts per step
    finetune_seeds: int = 1                  # fine-tuning runs per pooling (each a full training)
    finetune_train_limit: int | None = None  # fine-tune on at most this many of the training rows; None = all
    train_limit: int | None = None           # cap on training rows (stratified sample); None = all
    seeds: int = 3                           # probe repeats (mlp inits / MTEB experiments), mean ± std
    samples_per_label: int | None = None     # MTEB mode: each repeat trains on K rows per label
    mlp_epochs: int = 30                     # most epochs of the mlp / attention heads on frozen states
    val_fraction: float = 0.1                # training rows held out to pick epochs (early stopping); 0 = none
    patience: int = 5                        # mlp / attention: stop after this many epochs without gain
    token_states_limit_mb: float = 2048      # attention head: refuse a token-state cache larger than this
    device: str = checks.choice("auto", DEVICES)        # fine-tuning and attention head: auto, cpu, cuda, mps
    precision: str = checks.choice("auto", PRECISIONS)  # fine-tuning: auto (bf16 where native), fp32, bf16
    model: str | None = None                 # HF id or local dir; None = bundled all-MiniLM-L6-v2
    max_length: int | None = None            # tokens per text; None = the model's limit
    normalize: bool = True                   # L2-normalize frozen vectors (as `encode` does)
    # probes see the vectors as `encode --dtype` stores them: int8/uint8 (ranges from the training rows), bits
    vector_dtype: str = checks.choice("float32", DTYPES)
    truncate_dim: int | None = None          # probes see the first N dimensions, renormalized (Matryoshka)
    split_seed: int = 0                      # seed of the held-out split and the train_limit sample
    threads: int | None = None               # onnxruntime / torch threads; None = all cores
    out: str | None = None                   # report directory; None = TRAIN_STEM.classify
    save_model: str | None = None            # save the best probe here (safetensors + json)
    overwrite: bool = False                  # replace an existing report / saved model directory
    # also probe whole documents: texts cut into windows of this many tokens, the mean of the chunk
    # vectors (POOLING+chunks) and the first chunk alone (POOLING+first); None = truncated texts only
    chunk_tokens: int | None = None
    chunk_overlap: int = 0                   # tokens a window shares with the one before

    def __post_init__(self):
        checks.path("train", self.train)
        checks.path("test", self.test, optional=True)
        checks.number_in("test_fraction", self.test_fraction, 0.0, 1.0, low_open=True, high_open=True)
        checks.distinct_columns(("label_column", self.label_column), ("text_column", self.text_column))
        self.poolings = _names("poolings", self.poolings)
        for pooling in self.poolings:
            try:
                check_pooling(pooling)
            except ConfigError as e:
                raise ConfigError("poolings", str(e).removeprefix("pooling ")) from None
        self.heads = _names("heads", self.heads, allow_empty=True)
        for head in self.heads:
            checks.one_of("heads", head, PROBE_HEADS)
        self.layers = _layers(self.layers)
        checks.boolean("finetune", self.finetune)
        if self.finetune_heads is not None:
            self.finetune_heads = _names("finetune_heads", self.finetune_heads)
            for head in self.finetune_heads:
                checks.one_of("finetune_heads", head, FINETUNE_HEADS)
        checks.number_in("val_fraction", self.val_fraction, 0.0, 0.5, high_open=True)
        checks.at_least("patience", self.patience, 1)
        checks.number_in("token_states_limit_mb", self.token_states_limit_mb, 0.0, 1e9, low_open=True)
        checks.declared_choices(self)
        if not self.heads and not self.finetune:
            raise ConfigError("heads", "is empty and finetune is off: nothing to do")
        if self.finetune and not set(self.poolings) & set(FINETUNE_POOLINGS):
            raise ConfigError("poolings", f"must include {' or '.join(FINETUNE_POOLINGS)} when finetune is on")
        for name in ("epochs", "seeds", "finetune_seeds", "mlp_epochs", "finetune_batch_size"):
            checks.at_least(name, getattr(self, name), 1)
        checks.number_in("learning_rate", self.learning_rate, 0.0, 1.0, low_open=True)
        for name in ("finetune_train_limit", "train_limit", "samples_per_label", "threads"):
            checks.at_least(name, getattr(self, name), 1, optional=True)
        checks.path("model", self.model, optional=True)
        checks.at_least("max_length", self.max_length, 2, optional=True)
        checks.boolean("normalize", self.normalize)
        checks.at_least("truncate_dim", self.truncate_dim, 8, optional=True)
        if self.save_model is not None and (self.vector_dtype != "float32" or self.truncate_dim is not None):
            raise ConfigError("save_model", "saves a probe on float32 vectors of full width; drop vector_dtype / "
                              "truncate_dim to save one")
        checks.at_least("split_seed", self.split_seed, 0)
        checks.path("out", self.out, optional=True)
        checks.path("save_model", self.save_model, optional=True)
        checks.boolean("overwrite", self.overwrite)
        check_chunk_fields(self.chunk_tokens, self.chunk_overlap)

    def out_dir(self) -> Path:
        if self.out:
            return Path(self.out)
        name = str(self.train).rstrip("/").rsplit("/", 1)[-1]
        return Path((name[:-len(".parquet")] if name.endswith(".parquet") else name) + ".classify")

    def config(self) -> dict:
        """Every field as JSON holds it (tuples as lists): what report.json records."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}

    def encoder_spec(self, pooling: str) -> EncoderSpec:
        """The frozen encoder this job reads, with ``pooling``: ClassifyJob(model=None, ...) -> the bundled MiniLM."""
        return EncoderSpec(model=self.model, pooling=pooling, normalize=self.normalize, max_length=self.max_length,
                           device="cpu" if self.device == "mps" else self.device)   # the encoders run cuda or cpu


def _layers(value) -> str | tuple[int, ...]:
    """``last``, ``all`` or a list of hidden-state numbers (negative from the end), checked."""
    if value in ("last", "all"):
        return value
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
        raise ConfigError("layers", f"must be last, all or a list of layer numbers (e.g. -1,-2,6), got {value!r}")
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int):
            raise ConfigError("layers", f"must be whole numbers, got {item!r}")
    return tuple(dict.fromkeys(value))


def _names(field: str, values, allow_empty: bool = False) -> tuple[str, ...]:
    """A list of names as a tuple of unique strings, in order."""
    if isinstance(values, str) or not isinstance(values, (list, tuple)):
        raise ConfigError(field, f"must be a list of names, got {values!r}")
    if not values and not allow_empty:
        raise ConfigError(field, "must name at least one")
    for value in values:
        checks.text(field, value)
    return tuple(dict.fromkeys(values))
