"""Labeled parquet in, checked train/test splits out.

    >>> split = load_splits("train.parquet", test=None, test_fraction=0.2, label_column="label",
    ...                     text_column="text", train_limit=None, seed=0)
    >>> split.train.texts[:1], split.train.y[:3], split.classes
    (['a small dog'], array([2, 0, 1]), ['animal', 'food', 'plant'])

Every problem a user can cause (a missing column, null labels, a single class, test labels unseen
in training, fewer rows than classes, blank texts) is an EmbedpipeError with one line.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..corpus import resolve_filesystem
from ..errors import EmbedpipeError, first_line


@dataclass
class LabeledFile:
    """One parquet file's text and label columns, with a fingerprint of its bytes."""

    path: str
    texts: list[str]
    labels: list            # str / int / bool values, one per row
    ids: list | None        # the 'id' column when the file has one (for predictions)
    fingerprint: str        # sha256 of the file's bytes


@dataclass
class Part:
    """Rows of a LabeledFile chosen for training or testing."""

    source: LabeledFile
    rows: np.ndarray        # row numbers in source (sorted)
    y: np.ndarray           # class index per row (into Splits.classes)

    @property
    def texts(self) -> list[str]:
        return [self.source.texts[i] for i in self.rows]

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


def fingerprint(location: str) -> str:
    """sha256 of a file's bytes (local path or any URL pyarrow/fsspec opens)."""
    filesystem, path = resolve_filesystem(location)
    digest = hashlib.sha256()
    try:
        with filesystem.open_input_stream(path) as f:
            while block := f.read(1 << 20):
                digest.update(block)
    except (OSError, pa.ArrowException) as e:
        raise EmbedpipeError(f"cannot read {location}: {first_line(e)}") from None
    return digest.hexdigest()


def read_labeled(location: str, text_column: str, label_column: str | None) -> LabeledFile:
    """Read the text (and label) columns of one parquet file; check types, nulls and blank texts.

    ``label_column=None`` reads texts only (for ``predict``).
    """
    location = str(location)
    filesystem, path = resolve_filesystem(location)
    try:
        with filesystem.open_input_file(path) as f:
            schema = pq.read_schema(f)
    except FileNotFoundError:
        raise EmbedpipeError(f"{location} does not exist") from None
    except (OSError, pa.ArrowException) as e:
        raise EmbedpipeError(f"{location} is not a readable parquet file ({first_line(e)})") from None
    names = ", ".join(schema.names)
    if text_column not in schema.names:
        raise EmbedpipeError(f"{location} has no text column {text_column!r} (columns: {names}); "
                             "name one with --text-column")
    if label_column is not None and label_column not in schema.names:
        raise EmbedpipeError(f"{location} has no label column {label_column!r} (columns: {names}); "
                             "name one with --label-column")
    columns = [c for c in dict.fromkeys([text_column, label_column, "id"]) if c is not None and c in schema.names]
    with filesystem.open_input_file(path) as f:
        table = pq.read_table(f, columns=columns)
    text_type = table.schema.field(text_column).type
    if not (pa.types.is_string(text_type) or pa.types.is_large_string(text_type)):
        raise EmbedpipeError(f"{location}: text column {text_column!r} holds {text_type}, not strings")
    texts = table.column(text_column).to_pylist()
    blank = [i for i, t in enumerate(texts) if t is None or not t.strip()]
    if blank:
        raise EmbedpipeError(f"{location}: {len(blank)} row(s) have a null or blank text (first at row {blank[0]})")
    labels = None
    if label_column is not None:
        column = table.column(label_column)
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        kind = column.type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind)
                or pa.types.is_boolean(kind)):
            raise EmbedpipeError(f"{location}: label column {label_column!r} holds {kind}; "
                                 "labels must be strings, integers or booleans")
        if column.null_count:
            first = column.is_null().to_pylist().index(True)
            raise EmbedpipeError(f"{location}: {column.null_count} row(s) have a null label in {label_column!r} "
                                 f"(first at row {first}); drop or label them")
        labels = column.to_pylist()
    ids = table.column("id").to_pylist() if "id" in table.column_names and "id" != text_column else None
    return LabeledFile(location, texts, labels, ids, fingerprint(location))


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
        raise EmbedpipeError(f"--test-fraction must be between 0 and 1, got {test_fraction}")
    if train_limit is not None and train_limit < 1:
        raise EmbedpipeError(f"--train-limit must be positive, got {train_limit}")
    source = read_labeled(train, text_column, label_column)
    classes = sorted(set(source.labels))
    if len(classes) < 2:
        raise EmbedpipeError(f"{train}: every row has the label {classes[0]!r} if any; "
                             "a classifier needs at least two classes" if classes else f"{train} has no rows")
    index = {c: i for i, c in enumerate(classes)}
    y_all = np.array([index[v] for v in source.labels], dtype=np.int64)
    if test is None:
        counts = Counter(source.labels)
        single = [c for c, n in counts.items() if n < 2]
        if single:
            raise EmbedpipeError(f"{train}: class {single[0]!r} has a single row, so no stratified test split can "
                                 f"hold it out; give a --test file or more rows per class")
        n_test = max(len(classes), int(round(test_fraction * len(y_all))))
        if len(y_all) - n_test < len(classes):
            raise EmbedpipeError(f"{train}: {len(y_all)} rows cannot give both a training and a test row to each "
                                 f"of {len(classes)} classes")
        test_rows = _stratified_pick(y_all, n_test, seed)
        train_rows = np.setdiff1d(np.arange(len(y_all)), test_rows)
        test_part = Part(source, test_rows, y_all[test_rows])
    else:
        test_source = read_labeled(test, text_column, label_column)
        unseen = sorted(set(test_source.labels) - set(classes), key=str)
        if unseen:
            raise EmbedpipeError(f"{test}: {len(unseen)} test label(s) never occur in training "
                                 f"({', '.join(map(repr, unseen[:3]))}{', ...' if len(unseen) > 3 else ''})")
        if not test_source.texts:
            raise EmbedpipeError(f"{test} has no rows")
        test_part = Part(test_source, np.arange(len(test_source.texts)),
                         np.array([index[v] for v in test_source.labels], dtype=np.int64))
        train_rows = np.arange(len(y_all))
    if len(train_rows) < len(classes):
        raise EmbedpipeError(f"{train}: {len(train_rows)} training rows for {len(classes)} classes; "
                             "a classifier needs at least one row per class")
    splits = Splits(Part(source, train_rows, y_all[train_rows]), test_part, classes)
    return limit_train(splits, train_limit, seed) if train_limit is not None else _check_classes(splits)


def limit_train(splits: Splits, limit: int, seed: int, option: str = "--train-limit") -> Splits:
    """The same splits with at most ``limit`` training rows, a stratified sample (every class kept)."""
    train = splits.train
    if limit < len(train.rows):
        if limit < len(splits.classes):
            raise EmbedpipeError(f"{option} {limit} is fewer rows than the {len(splits.classes)} classes")
        picked = _stratified_pick(train.y, limit, seed)
        train = Part(train.source, train.rows[picked], train.y[picked])
    return _check_classes(Splits(train, splits.test, splits.classes))


def _check_classes(splits: Splits) -> Splits:
    missing = sorted(set(range(len(splits.classes))) - set(splits.train.y.tolist()))
    if missing:
        raise EmbedpipeError(f"class {splits.classes[missing[0]]!r} has no training rows left "
                             f"(after the test split or --train-limit)")
    return splits
