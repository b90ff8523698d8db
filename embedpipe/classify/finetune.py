"""Full fine-tuning of the encoder for sequence classification, with the heads transformers' classes
build, crossed with cls / mean pooling.

    >>> run = finetune(model_path, "cls", "pooler", split, FinetuneOptions(epochs=2), max_length=128,
    ...                seed=0, val_rows=val_positions)                                     # doctest: +SKIP
    >>> run.accuracy, run.best_epoch, run.history[-1]                                  # doctest: +SKIP

Pooling: ``cls`` (the first real token's hidden state) or ``mean`` (masked mean of the token states).
Heads, as the library classes build them:

- ``pooler``: BertForSequenceClassification's: BERT's pooler (dense + tanh; the checkpoint's own
  weights when it has one), dropout, a linear classifier.
- ``pre_classifier``: DistilBertForSequenceClassification's: Linear(dim, dim) + ReLU, dropout
  (``seq_classif_dropout``), the classifier.
- ``linear``: dropout + the classifier alone.

With cls pooling the first two give the same logits and loss as those classes with the same
weights (tests/classify/test_finetune.py). Dropout is the checkpoint config's (BERT's
classifier_dropout or hidden_dropout_prob, DistilBERT's seq_classif_dropout) unless set.

transformers' AutoModel plus the head; AdamW with linear warmup then linear decay; fixed seeds.
Batches are drawn in random order from length-sorted groups (as transformers' group_by_length
does), so little time goes to padding. After each epoch the validation rows (carved from the
training rows) are scored; the best epoch's weights are kept and the test rows scored once.
``device`` auto picks cuda, then mps, then cpu; ``precision`` auto uses bf16 autocast on a GPU
that supports it and on CPUs with native bf16 (AVX512_BF16 / AMX), fp32 elsewhere (an AVX2 CPU
emulates bf16, slower than fp32).
"""

from __future__ import annotations

import logging
import os
import random
import time
from dataclasses import dataclass, field, replace

import numpy as np

from .. import checks
from ..errors import ConfigError
from ..progress import Progress
from .data import Splits

log = logging.getLogger("embedpipe.classify")
FINETUNE_POOLINGS = ("cls", "mean")
FINETUNE_HEADS = ("pooler", "pre_classifier", "linear")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16")


def default_head(pooling: str) -> str:
    """The head a pooling gets when none is named: BERT's pooler for cls, a linear classifier for mean."""
    return "pooler" if pooling == "cls" else "linear"


@dataclass(frozen=True)
class FinetuneOptions:
    epochs: int = 3                 # passes over the training rows (at most, with validation rows)
    batch_size: int = 32            # texts per optimizer step
    lr: float = 5e-5                # AdamW learning rate (peak, after warmup)
    weight_decay: float = 0.01      # AdamW weight decay (not on biases and LayerNorm)
    warmup_fraction: float = 0.1    # share of the steps spent warming the learning rate up from 0
    dropout: float | None = None    # before the classifier; None = the checkpoint config's
    threads: int | None = None      # torch intra-op threads; None = all cores
    device: str = "auto"            # auto | cpu | cuda | mps
    precision: str = "auto"         # auto | fp32 | bf16 (autocast)

    def __post_init__(self):
        checks.training(replace(self, dropout=0.1) if self.dropout is None else self)
        checks.number_in("warmup_fraction", self.warmup_fraction, 0.0, 1.0)
        checks.at_least("threads", self.threads, 1, optional=True)
        checks.one_of("device", self.device, DEVICES)
        checks.one_of("precision", self.precision, PRECISIONS)


@dataclass
class FinetuneRun:
    accuracy: float
    macro_f1: float
    train_seconds: float
    predict_seconds: float          # the one evaluation over the test rows
    history: list[dict] = field(default_factory=list)   # per epoch: loss, val accuracy, seconds
    pooler_from_checkpoint: bool = False
    predicted: np.ndarray | None = None     # class index per test row
    best_epoch: int | None = None
    device: str = "cpu"
    precision: str = "fp32"


def resolve_device(name: str):
    """``auto`` -> cuda, else mps, else cpu; a named device that is not there is a one-line error."""
    import torch

    checks.one_of("device", name, DEVICES)
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()}
    if name == "auto":
        name = next(d for d in ("cuda", "mps", "cpu") if available[d])
    if not available[name]:
        raise ConfigError("device", f"{name} is not available on this machine (torch sees: "
                                    f"{', '.join(d for d, ok in available.items() if ok)})")
    return torch.device(name)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512_BF16 or AMX); an AVX2-only CPU does not."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(name: str, device) -> str:
    """``auto`` -> bf16 where the hardware has it (a bf16 GPU, a CPU with native bf16), else fp32."""
    import torch

    checks.one_of("precision", name, PRECISIONS)
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    return "fp32"


def head_dropout(config, head: str) -> float:
    """The dropout transformers' class for this head uses, read from the checkpoint's config."""
    if head == "pre_classifier" and getattr(config, "seq_classif_dropout", None) is not None:
        return float(config.seq_classif_dropout)
    for name in ("classifier_dropout", "hidden_dropout_prob", "seq_classif_dropout", "dropout"):
        value = getattr(config, name, None)
        if value is not None:
            return float(value)
    return 0.1


def classifier_module(encoder, pooling: str, head: str, n_classes: int, dropout: float | None = None):
    """The encoder plus ``head`` on ``pooling`` (see the module doc), as a torch module taking
    (input_ids, attention_mask) and returning logits."""
    import torch
    from torch import nn

    if pooling not in FINETUNE_POOLINGS:
        raise ConfigError("poolings", f"fine-tuning supports {', '.join(FINETUNE_POOLINGS)}, not {pooling!r}")
    checks.one_of("finetune_heads", head, FINETUNE_HEADS)
    config = encoder.config
    hidden = config.hidden_size if hasattr(config, "hidden_size") else config.dim
    std = getattr(config, "initializer_range", 0.02)

    def new_linear(rows: int) -> nn.Linear:
        layer = nn.Linear(hidden, rows)       # as transformers' _init_weights: normal(0, std), zero bias
        nn.init.normal_(layer.weight, std=std)
        nn.init.zeros_(layer.bias)
        return layer

    class SequenceClassifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder, self.pooling, self.head = encoder, pooling, head
            self.pooler_from_checkpoint = False
            if head == "pooler":
                self.pooler = new_linear(hidden)
                dense = getattr(getattr(encoder, "pooler", None), "dense", None)
                if isinstance(dense, nn.Linear) and dense.weight.shape == self.pooler.weight.shape:
                    self.pooler.load_state_dict(dense.state_dict())
                    self.pooler_from_checkpoint = True
            elif head == "pre_classifier":
                self.pre_classifier = new_linear(hidden)
            if getattr(encoder, "pooler", None) is not None:
                encoder.pooler = None   # the encoder's own pooler would run unused on every step
            self.dropout = nn.Dropout(head_dropout(config, head) if dropout is None else dropout)
            self.classifier = new_linear(n_classes)

        def forward(self, input_ids, attention_mask):
            states = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            if self.pooling == "cls":
                first = attention_mask.argmax(dim=1)    # first real token, whatever the padding side
                pooled = states[torch.arange(len(states), device=states.device), first]
            else:
                weights = attention_mask.unsqueeze(-1).to(states.dtype)
                pooled = (states * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            if self.head == "pooler":
                pooled = torch.tanh(self.pooler(pooled))
            elif self.head == "pre_classifier":
                pooled = torch.relu(self.pre_classifier(pooled))
            return self.classifier(self.dropout(pooled))

    return SequenceClassifier()


def _batches_by_length(lengths: np.ndarray, batch_size: int, rng: np.random.Generator, group: int = 50):
    """Random batches of similar length: shuffle, sort within groups of ``group`` batches, shuffle batches."""
    order = rng.permutation(len(lengths))
    batches = []
    span = batch_size * group
    for start in range(0, len(order), span):
        chunk = order[start:start + span]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def _pad(token_ids: list[list[int]], rows, pad_id: int, device=None):
    import torch

    width = max(len(token_ids[i]) for i in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, i in enumerate(rows):
        ids[r, :len(token_ids[i])] = torch.tensor(token_ids[i])
        mask[r, :len(token_ids[i])] = 1
    return (ids, mask) if device is None else (ids.to(device), mask.to(device))


def _predict(model, token_ids: list[list[int]], pad_id: int, desc: str, device, bf16: bool,
             batch_size: int = 128) -> np.ndarray:
    import torch

    lengths = np.array([len(t) for t in token_ids])
    order = np.argsort(-lengths, kind="stable")
    out = np.empty(len(token_ids), dtype=np.int64)
    model.eval()
    with (torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16),
          Progress(len(token_ids), desc) as progress):
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            out[rows] = model(*_pad(token_ids, rows, pad_id, device)).argmax(dim=1).cpu().numpy()
            progress.update(len(rows))
    return out


def finetune(model_path: str, pooling: str, head: str, splits: Splits, options: FinetuneOptions, *,
             max_length: int, seed: int, val_rows: np.ndarray | None = None) -> FinetuneRun:
    """Fine-tune the whole encoder plus ``head`` on ``pooling`` on the training rows (minus
    ``val_rows``, positions into splits.train, which pick the epoch); score splits.test once."""
    import torch
    from sklearn.metrics import accuracy_score, f1_score
    from transformers import AutoModel, AutoTokenizer, get_linear_schedule_with_warmup
    from transformers.utils import logging as hf_logging

    device = resolve_device(options.device)
    precision = resolve_precision(options.precision, device)
    bf16 = precision == "bf16"
    torch.set_num_threads(options.threads or os.cpu_count() or 1)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    hf_logging.set_verbosity_error()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    encoder = AutoModel.from_pretrained(model_path)
    model = classifier_module(encoder, pooling, head, len(splits.classes), options.dropout).to(device)
    pad_id = tokenizer.pad_token_id or 0

    def tokenize(texts):
        return tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]

    all_train_ids = tokenize(splits.train.texts)
    val_rows = np.zeros(0, dtype=np.int64) if val_rows is None else np.asarray(val_rows)
    fit_rows = np.setdiff1d(np.arange(len(all_train_ids)), val_rows)
    train_ids = [all_train_ids[i] for i in fit_rows]
    val_ids = [all_train_ids[i] for i in val_rows]
    test_ids = tokenize(splits.test.texts)
    y_train = torch.from_numpy(splits.train.y[fit_rows]).to(device)
    lengths = np.array([len(t) for t in train_ids])
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
    groups = [{"params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)],
               "weight_decay": options.weight_decay},
              {"params": [p for n, p in model.named_parameters() if n.endswith(no_decay)], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=options.lr)
    steps = options.epochs * -(-len(train_ids) // options.batch_size)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(options.warmup_fraction * steps), steps)
    loss_fn = torch.nn.CrossEntropyLoss()
    rng = np.random.default_rng(seed)
    name = f"fine-tune {pooling}/{head}"
    run = FinetuneRun(0.0, 0.0, 0.0, 0.0, pooler_from_checkpoint=model.pooler_from_checkpoint,
                      device=device.type, precision=precision)
    best, best_state = -1.0, None
    for epoch in range(1, options.epochs + 1):
        model.train()
        total_loss, started = 0.0, time.perf_counter()
        with Progress(len(train_ids), f"{name} epoch {epoch}/{options.epochs}") as progress:
            for rows in _batches_by_length(lengths, options.batch_size, rng):
                optimizer.zero_grad()
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    logits = model(*_pad(train_ids, rows, pad_id, device))
                loss = loss_fn(logits.float(), y_train[torch.from_numpy(rows).to(device)])
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                total_loss += loss.item() * len(rows)
                progress.update(len(rows))
        run.train_seconds += time.perf_counter() - started
        record = {"epoch": epoch, "loss": round(total_loss / len(train_ids), 5),
                  "seconds": round(time.perf_counter() - started, 2)}
        if len(val_ids):
            predicted = _predict(model, val_ids, pad_id, f"{name} validation {epoch}", device, bf16)
            record["val_accuracy"] = float(accuracy_score(splits.train.y[val_rows], predicted))
            if record["val_accuracy"] >= best:    # a tie: the later epoch (the lower learning rate) wins
                best, run.best_epoch = record["val_accuracy"], epoch
                best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        run.history.append(record)
        log.info("%s epoch %d/%d: loss %.4f%s", name, epoch, options.epochs, record["loss"],
                 f", validation accuracy {record['val_accuracy']:.4f}" if "val_accuracy" in record else "")
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        run.best_epoch = options.epochs
    evaluated = time.perf_counter()
    predicted = _predict(model, test_ids, pad_id, f"{name} test", device, bf16)
    run.predict_seconds = time.perf_counter() - evaluated
    run.predicted = predicted
    run.accuracy = float(accuracy_score(splits.test.y, predicted))
    run.macro_f1 = float(f1_score(splits.test.y, predicted, average="macro"))
    return run
