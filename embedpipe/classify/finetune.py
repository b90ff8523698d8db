"""Full fine-tuning of the encoder for sequence classification on CPU, with the head that matches
the pooling.

    >>> run = finetune(model_path, "cls", split, FinetuneOptions(epochs=2), max_length=128, seed=0)  # doctest: +SKIP
    >>> run.accuracy, run.history[-1]  # doctest: +SKIP

- ``cls``: BertForSequenceClassification's head: the first token's hidden state through BERT's
  pooler (dense + tanh, initialised from the checkpoint's pooler when it has one), dropout, a linear
  classifier.
- ``mean``: masked mean of the token states, dropout, a linear classifier.

transformers' AutoModel plus our head; AdamW with linear warmup then linear decay; fixed seeds;
torch threads = the cores given. Batches are drawn in random order from length-sorted groups (as
transformers' group_by_length does), so little time goes to padding. A progress bar per epoch,
then an evaluation on the test rows after each epoch.
"""

from __future__ import annotations

import logging
import os
import random
import time
from dataclasses import dataclass, field

import numpy as np

from .. import checks
from ..errors import ConfigError
from ..progress import Progress
from .data import Splits

log = logging.getLogger("embedpipe.classify")
FINETUNE_POOLINGS = ("cls", "mean")


@dataclass(frozen=True)
class FinetuneOptions:
    epochs: int = 3                 # passes over the training rows
    batch_size: int = 32            # texts per optimizer step
    lr: float = 5e-5                # AdamW learning rate (peak, after warmup)
    weight_decay: float = 0.01      # AdamW weight decay (not on biases and LayerNorm)
    warmup_fraction: float = 0.1    # share of the steps spent warming the learning rate up from 0
    dropout: float = 0.1            # before the classifier (BERT's hidden_dropout_prob)
    threads: int | None = None      # torch intra-op threads; None = all cores

    def __post_init__(self):
        checks.training(self)
        checks.number_in("warmup_fraction", self.warmup_fraction, 0.0, 1.0)
        checks.at_least("threads", self.threads, 1, optional=True)


@dataclass
class FinetuneRun:
    accuracy: float
    macro_f1: float
    train_seconds: float
    predict_seconds: float          # the last evaluation over the test rows
    history: list[dict] = field(default_factory=list)   # per epoch: loss, accuracy, macro_f1, seconds
    pooler_from_checkpoint: bool = False


def _classifier_module(encoder, pooling: str, n_classes: int, dropout: float):
    import torch
    from torch import nn

    class SequenceClassifier(nn.Module):
        def __init__(self):
            super().__init__()
            hidden = encoder.config.hidden_size
            self.encoder, self.pooling = encoder, pooling
            self.pooler_from_checkpoint = False
            if pooling == "cls":
                self.pooler = nn.Linear(hidden, hidden)
                dense = getattr(getattr(encoder, "pooler", None), "dense", None)
                if isinstance(dense, nn.Linear) and dense.weight.shape == self.pooler.weight.shape:
                    self.pooler.load_state_dict(dense.state_dict())
                    self.pooler_from_checkpoint = True
            if getattr(encoder, "pooler", None) is not None:
                encoder.pooler = None   # the encoder's own pooler would run unused on every step
            self.dropout = nn.Dropout(dropout)
            self.classifier = nn.Linear(hidden, n_classes)
            nn.init.normal_(self.classifier.weight, std=getattr(encoder.config, "initializer_range", 0.02))
            nn.init.zeros_(self.classifier.bias)

        def forward(self, input_ids, attention_mask):
            states = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            if self.pooling == "cls":
                first = attention_mask.argmax(dim=1)    # first real token, whatever the padding side
                pooled = torch.tanh(self.pooler(states[torch.arange(len(states)), first]))
            else:
                weights = attention_mask.unsqueeze(-1).to(states.dtype)
                pooled = (states * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
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


def _pad(token_ids: list[list[int]], rows, pad_id: int):
    import torch

    width = max(len(token_ids[i]) for i in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, i in enumerate(rows):
        ids[r, :len(token_ids[i])] = torch.tensor(token_ids[i])
        mask[r, :len(token_ids[i])] = 1
    return ids, mask


def _predict(model, token_ids: list[list[int]], pad_id: int, desc: str, batch_size: int = 128) -> np.ndarray:
    import torch

    lengths = np.array([len(t) for t in token_ids])
    order = np.argsort(-lengths, kind="stable")
    out = np.empty(len(token_ids), dtype=np.int64)
    model.eval()
    with torch.inference_mode(), Progress(len(token_ids), desc) as progress:
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            out[rows] = model(*_pad(token_ids, rows, pad_id)).argmax(dim=1).numpy()
            progress.update(len(rows))
    return out


def finetune(model_path: str, pooling: str, splits: Splits, options: FinetuneOptions, *, max_length: int,
             seed: int) -> FinetuneRun:
    """Fine-tune the whole encoder plus the ``pooling`` head on ``splits.train``; score on ``splits.test``."""
    if pooling not in FINETUNE_POOLINGS:
        raise ConfigError("poolings", f"fine-tuning supports {', '.join(FINETUNE_POOLINGS)}, not {pooling!r}")
    import torch
    from sklearn.metrics import accuracy_score, f1_score
    from transformers import AutoModel, AutoTokenizer, get_linear_schedule_with_warmup
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(options.threads or os.cpu_count() or 1)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    hf_logging.set_verbosity_error()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    encoder = AutoModel.from_pretrained(model_path)
    model = _classifier_module(encoder, pooling, len(splits.classes), options.dropout)
    pad_id = tokenizer.pad_token_id or 0

    def tokenize(texts):
        return tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]

    train_ids, test_ids = tokenize(splits.train.texts), tokenize(splits.test.texts)
    y_train = torch.from_numpy(splits.train.y)
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
    run = FinetuneRun(0.0, 0.0, 0.0, 0.0, pooler_from_checkpoint=model.pooler_from_checkpoint)
    for epoch in range(1, options.epochs + 1):
        model.train()
        total_loss, started = 0.0, time.perf_counter()
        with Progress(len(train_ids), f"fine-tune {pooling} epoch {epoch}/{options.epochs}") as progress:
            for rows in _batches_by_length(lengths, options.batch_size, rng):
                optimizer.zero_grad()
                loss = loss_fn(model(*_pad(train_ids, rows, pad_id)), y_train[rows])
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                total_loss += loss.item() * len(rows)
                progress.update(len(rows))
        run.train_seconds += time.perf_counter() - started
        evaluated = time.perf_counter()
        predicted = _predict(model, test_ids, pad_id, f"fine-tune {pooling} evaluation {epoch}/{options.epochs}")
        run.predict_seconds = time.perf_counter() - evaluated
        run.accuracy = float(accuracy_score(splits.test.y, predicted))
        run.macro_f1 = float(f1_score(splits.test.y, predicted, average="macro"))
        run.history.append({"epoch": epoch, "loss": round(total_loss / len(train_ids), 5),
                            "accuracy": run.accuracy, "macro_f1": run.macro_f1,
                            "seconds": round(time.perf_counter() - started, 2)})
        log.info("fine-tune %s epoch %d/%d: loss %.4f, test accuracy %.4f", pooling, epoch, options.epochs,
                 total_loss / len(train_ids), run.accuracy)
    return run
