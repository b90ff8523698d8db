"""Labeled parquet for `classify` (text and label columns) and unlabeled parquet for `predict`.

    >>> data = read_labeled("train.parquet", text_column="text", label_column="label")  # doctest: +SKIP
    >>> data.texts[:1], data.labels[:1], data.fingerprint[:12]                          # doctest: +SKIP
    (['a small dog'], ['animal'], '3f1c0e9a4b2d')

Every problem a user can cause (a missing column, a non-string text, null labels, blank texts) is
one error line naming the file, the column and the first row. Text columns follow the rules every
reader shares (columns.py): string, large_string, string_view, or those dictionary-encoded.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from ..errors import BadInput, first_line
from ..fsio import stream_sha256
from ..storage.filesystem import resolve_filesystem
from .columns import Column, first_null, invalid_utf8_rows, is_text_type
from .table import read_table


@dataclass
class LabeledFile:
    """One parquet file's text and label columns, with a fingerprint of its bytes."""

    path: str
    texts: list[str]
    labels: list            # str / int / bool values, one per row
    ids: list | None        # the 'id' column when the file has one (for predictions)
    fingerprint: str        # sha256 of the file's bytes


def fingerprint(location: str) -> str:
    """sha256 of a file's bytes (local path or any URL pyarrow/fsspec opens)."""
    filesystem, path = resolve_filesystem(location)
    try:
        with filesystem.open_input_stream(path) as f:
            return stream_sha256(f)
    except (OSError, pa.ArrowException) as e:
        raise BadInput(f"cannot read {location}: {first_line(e)}") from None


def read_labeled(location: str, text_column: str, label_column: str | None) -> LabeledFile:
    """Read the text (and label) columns of one parquet file; check types, nulls and blank texts.

    ``label_column=None`` reads texts only (for ``predict``).
    """
    location = str(location)
    wanted = [Column(text_column, "text", "text_column")]
    if label_column is not None:
        wanted.append(Column(label_column, "label", "label_column"))
    table = read_table(location, location, wanted, optional=("id",))
    texts = table.column(text_column)
    bad = invalid_utf8_rows(texts)
    if bad:
        raise BadInput(f"{location}: {len(bad)} row(s) hold text that is not valid UTF-8 (first at row {bad[0]})")
    texts = texts.to_pylist()
    blank = [i for i, t in enumerate(texts) if t is None or not t.strip()]
    if blank:
        raise BadInput(f"{location}: {len(blank)} row(s) have a null or blank text (first at row {blank[0]})")
    labels = None
    if label_column is not None:
        column = table.column(label_column)
        kind = column.type
        if not (is_text_type(kind) or pa.types.is_integer(kind) or pa.types.is_boolean(kind)):
            raise BadInput(f"{location}: label column {label_column!r} holds {kind}; "
                                 "labels must be strings, integers or booleans")
        if column.null_count:
            raise BadInput(f"{location}: {column.null_count} row(s) have a null label in {label_column!r} "
                                 f"(first at row {first_null(column)}); drop or label them")
        labels = column.to_pylist()
        blank_labels = [i for i, label in enumerate(labels) if isinstance(label, str) and not label.strip()]
        if blank_labels:   # a CSV's empty cell, a spreadsheet's missing value: a missing label, not a class
            raise BadInput(f"{location}: {len(blank_labels)} row(s) have an empty label in {label_column!r} "
                           f"(first at row {blank_labels[0]}); drop or label them")
    ids = table.column("id").to_pylist() if "id" in table.column_names and "id" != text_column else None
    return LabeledFile(location, texts, labels, ids, fingerprint(location))
