"""Errors name config fields; each front end shows them its own way: EmbedpipeError.render, and the CLI's
flag_of / user_errors, which turn a library error into one `Error:` line with exit code 1."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from embedpipe.cli.options import flag_of, user_errors
from embedpipe.errors import BadInput, ConfigError, CorruptArtifact, EmbedpipeError, first_line
from tests.helpers import assert_one_line_error


def as_flag(field: str, value: str | None) -> str:
    return "--" + field.replace("_", "-") + (f" {value}" if value else "")


RENDERED = [
    # (message, fields, as shown with as_flag)
    ("rows_per_shard must be at least 1, got 0", ("rows_per_shard",), "--rows-per-shard must be at least 1, got 0"),
    ("2 blank texts; set empty_text=skip to leave them out", ("empty_text",),
     "2 blank texts; set --empty-text skip to leave them out"),
    ("pass overwrite=true to replace it", ("overwrite",), "pass --overwrite true to replace it"),
    # a standalone word that is a field is the field, prose or not: messages say "exhaustive search", not "exact"
    ("exact search failed; pass exact=false", ("exact",), "--exact search failed; pass --exact false"),
    ("k must be at least 1; k_values too", ("k", "k_values"), "--k must be at least 1; --k-values too"),
    # a field inside a longer word, a dotted key or a hyphenated name is not the field
    ("overwrites my_overwrite encode.overwrite re-overwrite overwrite-me", ("overwrite",),
     "overwrites my_overwrite encode.overwrite re-overwrite overwrite-me"),
    ("keep k=3 (k)", ("k",), "keep --k 3 (--k)"),
    ("threads must be at least 1", (), "threads must be at least 1"),   # no fields: left as it is
    ("", ("threads",), ""),
]


@pytest.mark.parametrize("message, fields, shown", RENDERED, ids=[r[2] or "<empty>" for r in RENDERED])
def test_render_shows_each_named_field_through_the_given_function(message, fields, shown):
    error = EmbedpipeError(message, fields=fields)
    assert error.render(as_flag) == shown
    assert str(error) == message                             # the message itself keeps the field names


def test_render_passes_the_value_written_after_the_field():
    seen = []
    BadInput("set pooling=mean or pooling=cls, or pooling", fields=("pooling",)).render(
        lambda field, value: seen.append((field, value)) or "X")
    assert seen == [("pooling", "mean"), ("pooling", "cls"), ("pooling", None)]


def test_a_config_error_names_its_field_and_is_a_value_error():
    error = ConfigError("rows_per_shard", "must be an integer of at least 1, got 0")
    assert str(error) == "rows_per_shard must be an integer of at least 1, got 0"
    assert error.field == "rows_per_shard" and error.fields == ("rows_per_shard",)
    assert isinstance(error, ValueError) and isinstance(error, EmbedpipeError)
    assert error.render(as_flag) == "--rows-per-shard must be an integer of at least 1, got 0"


@pytest.mark.parametrize("kind", [BadInput, CorruptArtifact, EmbedpipeError])
def test_every_deliberate_error_is_an_embedpipe_error_without_fields_by_default(kind):
    error = kind("something is wrong")
    assert isinstance(error, EmbedpipeError) and error.fields == ()


@pytest.mark.parametrize("error, line", [
    (ValueError("first\nsecond"), "first"),
    (ValueError("  \n padded \n"), "padded"),
    (KeyError(), "KeyError"),
    (RuntimeError(""), "RuntimeError"),
])
def test_first_line(error, line):
    assert first_line(error) == line


@pytest.mark.parametrize("field, value, flags, shown", [
    ("rows_per_shard", None, None, "--rows-per-shard"),
    ("empty_text", "skip", None, "--empty-text skip"),
    ("overwrite", "true", None, "--overwrite"),
    ("exact", "false", None, "--no-exact"),
    ("learning_rate", None, {"learning_rate": "--lr"}, "--lr"),
    ("finetune_batch_size", "8", {"finetune_batch_size": "--batch-size"}, "--batch-size 8"),
    ("normalize", "false", {"normalize": "--normalize"}, "--no-normalize"),
    ("train", None, {"train": "TRAIN"}, "TRAIN"),
])
def test_flag_of(field, value, flags, shown):
    assert flag_of(field, value, flags) == shown


def _command(error: Exception):
    @click.command()
    @user_errors(flags={"learning_rate": "--lr"})
    def command():
        raise error

    return command


def test_user_errors_makes_one_error_line_with_flags_and_exit_code_1():
    result = CliRunner().invoke(_command(ConfigError("learning_rate", "must be a number in (0, 1], got 0.0")))
    line = assert_one_line_error(result, "Error: --lr must be a number in (0, 1], got 0.0")
    assert "learning_rate" not in line
    result = CliRunner().invoke(_command(BadInput("3 blank texts; pass empty_text=skip", fields=("empty_text",))))
    assert_one_line_error(result, "Error: 3 blank texts; pass --empty-text skip")


def test_user_errors_lets_a_bug_surface_instead_of_dressing_it_as_a_user_error():
    result = CliRunner().invoke(_command(KeyError("manifest")))
    assert isinstance(result.exception, KeyError)
    assert "Error:" not in result.output
