"""Labeled parquet in, checked train/test splits out.

    >>> split = load_splits("train.parquet", test=None, test_fraction=0.2, label_column="label",  # doctest: +SKIP
    ...                     text_column="text", train_limit=None, seed=0)
    >>> split.train.texts[:1], split.train.y[:3], split.classes  # doctest: +SKIP
    (['a small dog'], array([2, 0, 1]), ['animal', 'food', 'plant'])

Every problem a user can cause (a missing column, null labels, a single class, test labels unseen
in training, fewer rows than classes, blank texts) is a BadInput error with one line.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass

import numpy as np

from ..errors import BadInput, ConfigError
from ..formats.labeled import LabeledFile, read_labeled


@dataclass
class Part:
    """Rows of a LabeledFile chosen for training or testing."""

    source: LabeledFile
    rows: np.ndarray        # row numbers in source (sorted)
    y: np.ndarray           # class index per row (into Splits.classes)

    @property
    def texts(self) -> list[str]:
        return [self.source.texts[i] for i in self.rows]

    def fingerprint(self) -> str:
        """The rows' texts and labels, hashed: reports pair their test rows (classify/merge.py) only
        when this agrees."""
        digest = hashlib.sha256()
        for text, label in zip(self.texts, self.y):
            digest.update(f"{len(text)}:{text}{int(label)}\n".encode("utf-8", "surrogatepass"))
        return digest.hexdigest()

    def rows_key(self) -> str:
        """Identifies this choice of rows (for the feature cache)."""
        if len(self.rows) == len(self.source.texts):
            return "all"
        return hashlib.sha256(np.ascontiguousarray(self.rows, dtype=np.int64).tobytes()).hexdigest()[:16]


@dataclass
class Splits:
    train: Part
    test: Part
    classes: list           # class values, sorted; y indexes into this


def _stratified_pick(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` row numbers with every class's share kept (at least one row per class); sorted."""
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(y))
    counts = np.bincount(y)
    stratify = y if counts[counts > 0].min() >= 2 and n >= len(counts) and len(y) - n >= len(counts) else None
    picked, _ = train_test_split(rows, train_size=n, random_state=seed, stratify=stratify)
    return np.sort(picked)


def load_splits(train: str, *, test: str | None, test_fraction: float, label_column: str, text_column: str,
                train_limit: int | None, seed: int) -> Splits:
    """Read and check the data; hold out ``test_fraction`` (stratified) when no test file is given."""
    if not 0 < test_fraction < 1:
        raise ConfigError("test_fraction", f"must be between 0 and 1, got {test_fraction}")
    if train_limit is not None and train_limit < 1:
        raise ConfigError("train_limit", f"must be positive, got {train_limit}")
    source = read_labeled(train, text_column, label_column)
    classes = sorted(set(source.labels))
    if len(classes) < 2:
        raise BadInput(f"{train}: every row has the label {classes[0]!r} if any; "
                             "a classifier needs at least two classes" if classes else f"{train} has no rows")
    index = {c: i for i, c in enumerate(classes)}
    y_all = np.array([index[v] for v in source.labels], dtype=np.int64)
    if test is None:
        counts = Counter(source.labels)
        single = [c for c, n in counts.items() if n < 2]
        if single:
            raise BadInput(f"{train}: class {single[0]!r} has a single row, so no stratified test split can "
                                 f"hold it out; give a test file or more rows per class", fields=("test",))
        n_test = max(len(classes), int(round(test_fraction * len(y_all))))
        if len(y_all) - n_test < len(classes):
            raise BadInput(f"{train}: {len(y_all)} rows cannot give both a training and a test row to each "
                                 f"of {len(classes)} classes")
        test_rows = _stratified_pick(y_all, n_test, seed)
        train_rows = np.setdiff1d(np.arange(len(y_all)), test_rows)
        test_part = Part(source, test_rows, y_all[test_rows])
    else:
        test_source = read_labeled(test, text_column, label_column)
        unseen = sorted(set(test_source.labels) - set(classes), key=str)
        if unseen:
            raise BadInput(f"{test}: {len(unseen)} test label(s) never occur in training "
                                 f"({', '.join(map(repr, unseen[:3]))}{', ...' if len(unseen) > 3 else ''})")
        if not test_source.texts:
            raise BadInput(f"{test} has no rows")
        test_part = Part(test_source, np.arange(len(test_source.texts)),
                         np.array([index[v] for v in test_source.labels], dtype=np.int64))
        train_rows = np.arange(len(y_all))
    if len(train_rows) < len(classes):
        raise BadInput(f"{train}: {len(train_rows)} training rows for {len(classes)} classes; "
                             "a classifier needs at least one row per class")
    splits = Splits(Part(source, train_rows, y_all[train_rows]), test_part, classes)
    return limit_train(splits, train_limit, seed) if train_limit is not None else _check_classes(splits)


def limit_train(splits: Splits, limit: int, seed: int, option: str = "train_limit") -> Splits:
    """The same splits with at most ``limit`` training rows, a stratified sample (every class kept)."""
    train = splits.train
    if limit < len(train.rows):
        if limit < len(splits.classes):
            raise BadInput(f"{option} {limit} is fewer rows than the {len(splits.classes)} classes", fields=(option,))
        picked = _stratified_pick(train.y, limit, seed)
        train = Part(train.source, train.rows[picked], train.y[picked])
    return _check_classes(Splits(train, splits.test, splits.classes))


def _check_classes(splits: Splits) -> Splits:
    missing = sorted(set(range(len(splits.classes))) - set(splits.train.y.tolist()))
    if missing:
        raise BadInput(f"class {splits.classes[missing[0]]!r} has no training rows left "
                             f"(after the test split or train_limit)", fields=("train_limit",))
    return splits


def carve_validation(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions (into ``y``) to fit on and to validate on: a stratified ``fraction`` of the training
    rows held out to pick epochs (early stopping), so the test rows are scored once, never chosen on.
    ``fraction`` 0 holds out nothing; too few rows for one per class leaves nothing held out either."""
    positions = np.arange(len(y))
    n_classes = len(np.unique(y))
    n_val = int(round(fraction * len(y)))
    if fraction <= 0 or n_val < 1 or len(y) - n_val < n_classes:
        return positions, positions[:0]
    val = _stratified_pick(y, n_val, seed + 1)
    return np.setdiff1d(positions, val), val
