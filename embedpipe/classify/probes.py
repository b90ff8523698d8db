"""Heads trained on frozen vectors: ``linear`` (logistic regression) and ``mlp`` (DistilBERT's head).

    >>> head = fit_linear(X_train, y_train, seed=0)  # doctest: +SKIP
    >>> head_logits(head, X_test).argmax(1)           # class indices  # doctest: +SKIP

A head is plain data: ``Head(kind, weights)`` with numpy arrays named like the layers they stand
for, so it is applied in numpy and saved without pickle (formats/classifier.py).

- ``linear``: scikit-learn LogisticRegression (lbfgs, L2, C=1) on the vectors.
- ``mlp``: DistilBertForSequenceClassification's head on the vectors: ``pre_classifier``
  Linear(dim, dim) -> ReLU -> dropout -> ``classifier`` Linear(dim, classes), trained in torch
  with AdamW on cross-entropy.
- MTEB mode (``samples_per_label``): each experiment trains on K rows per label picked the way
  MTEB's AbsTaskClassification does (one index list, reshuffled by ``RandomState(42)`` before each
  experiment, the first K rows of each label kept) with MTEB's LogisticRegression(max_iter=100,
  random_state=42); the score is the mean over experiments.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from .. import checks
from ..formats.classifier import HEADS, Head  # noqa: F401  (HEADS: the heads a saved classifier holds)

PROBE_HEADS = ("linear", "mlp", "attention")   # attention: classify/attention.py, on token states

MTEB_SEED = 42


@dataclass(frozen=True)
class MlpOptions:
    epochs: int = 30          # passes over the training vectors (at most, with a validation set)
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.01
    dropout: float = 0.2      # DistilBERT's seq_classif_dropout
    patience: int = 5         # stop after this many epochs without a better validation accuracy

    def __post_init__(self):
        checks.training(self)
        checks.at_least("patience", self.patience, 1)


def head_logits(head: Head, x: np.ndarray) -> np.ndarray:
    """(n, dim) vectors -> (n, classes) scores, in numpy."""
    w = head.weights
    if head.kind == "linear":
        return x @ w["weight"].T + w["bias"]
    hidden = np.maximum(x @ w["pre_classifier.weight"].T + w["pre_classifier.bias"], 0)
    return hidden @ w["classifier.weight"].T + w["classifier.bias"]


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def fit_linear(x: np.ndarray, y: np.ndarray, n_classes: int, seed: int = 0, max_iter: int = 1000) -> Head:
    """Multinomial logistic regression; weights laid out for all ``n_classes`` even if some are absent."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(max_iter=max_iter, random_state=seed)
    clf.fit(x, y)
    weight = np.zeros((n_classes, x.shape[1]), dtype=np.float32)
    bias = np.full(n_classes, -1e4, dtype=np.float32)   # a class never seen in training is never predicted
    if len(clf.classes_) == 2:  # sklearn keeps one row for two classes: logit(class 1) - logit(class 0)
        coef, intercept = np.vstack([-clf.coef_ / 2, clf.coef_ / 2]), np.array([-clf.intercept_[0] / 2,
                                                                                clf.intercept_[0] / 2])
    else:
        coef, intercept = clf.coef_, clf.intercept_
    weight[clf.classes_] = coef
    bias[clf.classes_] = intercept
    return Head("linear", {"weight": weight, "bias": bias})


def fit_mlp(x: np.ndarray, y: np.ndarray, n_classes: int, seed: int = 0, options: MlpOptions = MlpOptions(),
            val: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[Head, int]:
    """DistilBERT's pre_classifier + ReLU + dropout + classifier, trained on frozen vectors; with ``val``
    (vectors, labels) the epoch with the best validation accuracy is kept. Returns (head, epochs kept)."""
    import torch
    from torch import nn

    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # small matrices: one thread is faster, and far faster on a busy machine
    try:
        torch.manual_seed(seed)
        dim = x.shape[1]
        model = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(options.dropout),
                              nn.Linear(dim, n_classes))
        xs = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        ys = torch.from_numpy(y.astype(np.int64))

        def batches(generator):
            for batch in torch.randperm(len(xs), generator=generator).split(options.batch_size):
                yield model(xs[batch]), ys[batch]

        def val_accuracy():
            with torch.inference_mode():
                return val_score(model(torch.from_numpy(np.ascontiguousarray(val[0], dtype=np.float32))), val[1])

        best_epoch = train_with_early_stopping(torch, model, batches, options, seed,
                                               val_accuracy if val is not None and len(val[1]) else None)
    finally:
        torch.set_num_threads(threads)
    first, last = model[0], model[3]
    return Head("mlp", {"pre_classifier.weight": first.weight.detach().numpy().copy(),
                        "pre_classifier.bias": first.bias.detach().numpy().copy(),
                        "classifier.weight": last.weight.detach().numpy().copy(),
                        "classifier.bias": last.bias.detach().numpy().copy()}), best_epoch


def val_score(logits, y: np.ndarray) -> tuple[float, float]:
    """(accuracy, -cross-entropy) on validation rows: accuracy first; on a tie the lower loss wins."""
    import torch

    labels = torch.from_numpy(np.asarray(y, dtype=np.int64))
    accuracy = float((logits.argmax(1) == labels).float().mean())
    return accuracy, -float(torch.nn.functional.cross_entropy(logits.float(), labels))


def train_with_early_stopping(torch, model, batches, options, seed: int, val_accuracy) -> int:
    """AdamW on cross-entropy over ``batches(generator)`` (yielding (logits, labels)) for up to
    ``options.epochs``; with ``val_accuracy`` (-> a val_score tuple) the best epoch's weights are
    restored and training stops after ``options.patience`` epochs without improvement. Returns the
    epoch kept."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    generator = torch.Generator().manual_seed(seed)
    loss_fn = torch.nn.CrossEntropyLoss()
    best, best_epoch, best_state = None, options.epochs, None
    for epoch in range(1, options.epochs + 1):
        model.train()
        for logits, labels in batches(generator):
            optimizer.zero_grad()
            loss_fn(logits, labels).backward()
            optimizer.step()
        if val_accuracy is None:
            continue
        model.eval()
        score = val_accuracy()
        if best is None or score > best:
            best, best_epoch = score, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif epoch - best_epoch >= options.patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return best_epoch


def mteb_samples(y: np.ndarray, samples_per_label: int, experiments: int) -> list[np.ndarray]:
    """Row numbers for each experiment, sampled as MTEB's classification tasks do."""
    idxs = list(range(len(y)))
    picks = []
    for _ in range(experiments):
        np.random.RandomState(MTEB_SEED).shuffle(idxs)
        counter: dict[int, int] = defaultdict(int)
        chosen = []
        for i in idxs:
            if counter[y[i]] < samples_per_label:
                chosen.append(i)
                counter[y[i]] += 1
        picks.append(np.array(chosen, dtype=np.int64))
    return picks


@dataclass
class ProbeRun:
    head: Head | None             # None for the attention head (it pools token states; not saved)
    accuracy: float
    macro_f1: float
    train_seconds: float
    predict_seconds: float
    train_rows: int
    predicted: np.ndarray | None = None     # class index per test row
    best_epoch: int | None = None           # epochs kept (mlp / attention with a validation set)


def train_and_score(kind: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                    n_classes: int, seed: int, mlp: MlpOptions = MlpOptions(), max_iter: int = 1000,
                    val: tuple[np.ndarray, np.ndarray] | None = None) -> ProbeRun:
    """Fit one head (the mlp picking its epoch on ``val``) and score it once on the test vectors."""
    started = time.perf_counter()
    best_epoch = None
    if kind == "linear":
        head = fit_linear(x_train, y_train, n_classes, seed, max_iter=max_iter)
    else:
        head, best_epoch = fit_mlp(x_train, y_train, n_classes, seed, mlp, val)
    trained = time.perf_counter()
    predicted = head_logits(head, x_test).argmax(axis=1)
    done = time.perf_counter()
    return scored(head, y_test, predicted, trained - started, done - trained, len(y_train), best_epoch)


def scored(head, y_test: np.ndarray, predicted: np.ndarray, train_seconds: float, predict_seconds: float,
           train_rows: int, best_epoch: int | None) -> ProbeRun:
    from sklearn.metrics import accuracy_score, f1_score

    return ProbeRun(head, float(accuracy_score(y_test, predicted)),
                    float(f1_score(y_test, predicted, average="macro")), train_seconds, predict_seconds,
                    train_rows, predicted.astype(np.int64), best_epoch)
