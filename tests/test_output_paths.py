"""Every command that writes refuses, before it touches anything, an output that would destroy one of
its inputs or cannot be created: the output is an input, lies inside one, holds one, holds the working
directory, or sits under a regular file. From the CLI that is one `Error:` line and exit code 1; from
Python a BadInput; either way no file under the test's directory (or the export cache) is created,
changed or left behind.

The inputs are real files, but nothing here loads a model: the model directories hold only a
config.json, the classifier and index directories only placeholder files, so a command that failed
to refuse would stop with a different error (no tokenizer, not a classifier) and fail the test.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedpipe.classify import ClassifyJob, predict_file, run_classify
from embedpipe.encode import EncodeJob, encode_corpus
from embedpipe.encode.encoder import EncoderSpec
from embedpipe.errors import BadInput
from embedpipe.formats.vectors import VectorWriter
from embedpipe.index import IndexConfig, append_index, build_index
from embedpipe.model.export import ensure_exported
from embedpipe.model.resolve import ResolvedModel
from embedpipe.retrieval.evaluate import EvaluateJob, run_evaluate
from embedpipe.retrieval.search import search_file
from tests.helpers import assert_one_line_error, names_under, run_cli, snapshot, write_corpus

# --- inputs: each in a directory of its own, so that directory "holds" exactly that input -------------

def _corpus_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    write_corpus(path / "part-0.parquet")
    return path


def _model_dir(path: Path) -> Path:
    """A directory a model name points at; no tokenizer, so loading it would fail at once."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    return path


def _vectors_dir(path: Path, rows: int = 60, dim: int = 8) -> Path:
    vectors = np.random.default_rng(0).standard_normal((rows, dim)).astype(np.float32)
    with VectorWriter(path, dim=dim, rows_per_shard=25) as writer:
        writer.write([f"d{i}" for i in range(rows)], vectors)
        writer.publish({"pooling": "mean", "normalize": False})
    return path


def _queries(path: Path) -> Path:
    path.parent.mkdir(parents=True)
    pq.write_table(pa.table({"id": ["q1", "q2"], "text": ["a small dog", "green trees"]}), path)
    return path


def _qrels(path: Path) -> Path:
    path.parent.mkdir(parents=True)
    pq.write_table(pa.table({"query_id": ["q1"], "doc_id": ["d1"], "relevance": [1]}), path)
    return path


def _labeled(path: Path) -> Path:
    path.parent.mkdir(parents=True)
    pq.write_table(pa.table({"text": ["a cat", "a dog", "red book", "old car"], "label": [0, 1, 0, 1]}), path)
    return path


def _placeholder_dir(path: Path, *names: str) -> Path:
    """A directory holding files of the given names with placeholder bytes (not loadable)."""
    path.mkdir(parents=True)
    for name in names:
        (path / name).write_text("placeholder\n")
    return path


@dataclass(frozen=True)
class Command:
    name: str
    inputs: dict[str, str]                                          # label in messages -> "file" or "dir"
    make: Callable[[Path], dict[str, Path]]                         # tmp dir -> label -> the input's path
    call: Callable[[dict[str, Path], Path], object]                 # the library function, writing out
    cli: Callable[[dict[str, Path], Path], list] | None = None      # argv of the command writing out


COMMANDS = [
    Command("encode", {"corpus": "dir", "model": "dir"},
            lambda tmp: {"corpus": _corpus_dir(tmp / "corpus" / "texts"), "model": _model_dir(tmp / "model" / "m")},
            lambda i, out: encode_corpus(EncodeJob(str(i["corpus"]), out=str(out), runner="local",
                                                   spec=EncoderSpec(model=str(i["model"])))),
            lambda i, out: ["encode", i["corpus"], "--model", i["model"], "--runner", "local", "--out", out]),
    Command("index", {"vectors": "dir", "tuning queries": "file"},
            lambda tmp: {"vectors": _vectors_dir(tmp / "vectors" / "vec"),
                         "tuning queries": _queries(tmp / "tuning" / "queries.parquet")},
            lambda i, out: build_index(i["vectors"], out, IndexConfig(tuning_vectors=str(i["tuning queries"]))),
            lambda i, out: ["index", i["vectors"], "--out", out, "--tuning-queries", i["tuning queries"]]),
    Command("classify", {"train": "file", "test": "file", "model": "dir"},
            lambda tmp: {"train": _labeled(tmp / "train" / "train.parquet"),
                         "test": _labeled(tmp / "test" / "test.parquet"), "model": _model_dir(tmp / "model" / "m")},
            lambda i, out: run_classify(ClassifyJob(train=str(i["train"]), test=str(i["test"]),
                                                    model=str(i["model"]), out=str(out))),
            lambda i, out: ["classify", i["train"], "--test", i["test"], "--model", i["model"], "--out", out]),
    Command("classify --save-model", {"train": "file", "test": "file", "model": "dir", "report directory": "dir"},
            lambda tmp: {"train": _labeled(tmp / "train" / "train.parquet"),
                         "test": _labeled(tmp / "test" / "test.parquet"), "model": _model_dir(tmp / "model" / "m"),
                         "report directory": tmp / "report" / "rep"},   # written by the same run, so not made here
            lambda i, out: run_classify(ClassifyJob(train=str(i["train"]), test=str(i["test"]), model=str(i["model"]),
                                                    out=str(i["report directory"]), save_model=str(out))),
            lambda i, out: ["classify", i["train"], "--test", i["test"], "--model", i["model"],
                            "--out", i["report directory"], "--save-model", out]),
    Command("predict", {"model": "dir", "data": "file"},
            lambda tmp: {"model": _placeholder_dir(tmp / "model" / "clf", "classifier.json", "head.safetensors"),
                         "data": _labeled(tmp / "data" / "new.parquet")},
            lambda i, out: predict_file(i["model"], str(i["data"]), out),
            lambda i, out: ["predict", i["model"], i["data"], "--out", out]),
    Command("search --out", {"index": "dir", "queries": "file"},
            lambda tmp: {"index": _placeholder_dir(tmp / "index" / "idx", "index.json"),
                         "queries": _queries(tmp / "queries" / "queries.parquet")},
            lambda i, out: search_file(i["index"], i["queries"], out),
            lambda i, out: ["search", i["index"], "--queries", i["queries"], "--out", out]),
    Command("export", {"model": "dir"},
            lambda tmp: {"model": _model_dir(tmp / "model" / "m")},
            lambda i, out: ensure_exported(ResolvedModel("m", i["model"].resolve(), "0" * 64), out=out),
            lambda i, out: ["export", "--model", i["model"], "--out", out]),
    Command("evaluate (run_evaluate)", {"index": "dir", "queries": "file", "qrels": "file"},
            lambda tmp: {"index": _placeholder_dir(tmp / "index" / "idx", "index.json"),
                         "queries": _queries(tmp / "queries" / "queries.parquet"),
                         "qrels": _qrels(tmp / "qrels" / "qrels.parquet")},
            lambda i, out: run_evaluate(EvaluateJob(str(i["index"]), str(i["queries"]), str(i["qrels"]),
                                                    out=str(out)))),
]


# --- how an output relates to an input, and what the one error line then says ---------------------------

def _output(relation: str, source: Path | None, tmp: Path, monkeypatch) -> Path:
    if relation == "is":
        return source
    if relation == "lies inside":
        return source / "out"
    if relation == "holds":
        return source.parent
    if relation == "under a regular file":
        (tmp / "note.txt").write_text("a file, not a directory\n")
        return tmp / "note.txt" / "out"
    if relation == "is the working directory":
        (tmp / "work").mkdir()
        monkeypatch.chdir(tmp / "work")
        return Path(".")
    if relation == "holds the working directory":
        (tmp / "work" / "deep").mkdir(parents=True)
        monkeypatch.chdir(tmp / "work" / "deep")
        return Path("..")
    raise AssertionError(relation)


def _expected(relation: str, label: str | None) -> tuple[str, ...]:
    return {"is": (f"is the {label} ",), "lies inside": (f"lies inside the {label} ",),
            "holds": (f"holds the {label} ", "replacing it would delete it"),
            "under a regular file": ("cannot be created", "note.txt is not a directory"),
            "is the working directory": ("holds the working directory",),
            "holds the working directory": ("holds the working directory",)}[relation]


CASES = [pytest.param(command, relation, label, id=f"{command.name}: output {relation} the {label}")
         for command in COMMANDS for label, kind in command.inputs.items()
         for relation in ("is", "lies inside", "holds") if relation != "lies inside" or kind == "dir"]
CASES += [pytest.param(command, relation, None, id=f"{command.name}: output {relation}")
          for command in COMMANDS
          for relation in ("under a regular file", "is the working directory", "holds the working directory")]


def _written_nothing(tmp_path: Path, export_cache: Path):
    """What must not change: every byte under the test's directory, every name in the export cache
    (an export or a model's hash memo would add one)."""
    return snapshot(tmp_path), names_under(export_cache)


@pytest.mark.parametrize("command, relation, label", CASES)
def test_the_library_refuses_before_writing(command, relation, label, tmp_path, export_cache, monkeypatch):
    inputs = command.make(tmp_path)
    out = _output(relation, inputs.get(label), tmp_path, monkeypatch)
    before = _written_nothing(tmp_path, export_cache)
    with pytest.raises(BadInput) as refused:
        command.call(inputs, out)
    for fragment in _expected(relation, label):
        assert fragment in str(refused.value)
    assert _written_nothing(tmp_path, export_cache) == before


@pytest.mark.parametrize("command, relation, label", [case for case in CASES if case.values[0].cli is not None])
def test_the_cli_refuses_in_one_line_before_writing(command, relation, label, tmp_path, export_cache, monkeypatch):
    inputs = command.make(tmp_path)
    out = _output(relation, inputs.get(label), tmp_path, monkeypatch)
    before = _written_nothing(tmp_path, export_cache)
    assert_one_line_error(run_cli(*command.cli(inputs, out)), "output", *_expected(relation, label))
    assert _written_nothing(tmp_path, export_cache) == before


# --- more aliases: the corpus file itself, symlinks, file:// inputs, URL outputs ---------------------------

@pytest.mark.parametrize("frontend", ["cli", "python"])
def test_encode_refuses_the_corpus_file_itself_as_output(frontend, tmp_path, export_cache):
    corpus = write_corpus(tmp_path / "corpus.parquet")
    model = _model_dir(tmp_path / "m")
    before = _written_nothing(tmp_path, export_cache)
    if frontend == "cli":
        assert_one_line_error(run_cli("encode", corpus, "--model", model, "--runner", "local", "--out", corpus),
                              f"output {corpus} is the corpus {corpus}")
    else:
        with pytest.raises(BadInput, match="is the corpus"):
            encode_corpus(EncodeJob(str(corpus), out=str(corpus), runner="local", spec=EncoderSpec(model=str(model))))
    assert _written_nothing(tmp_path, export_cache) == before


@pytest.mark.parametrize("frontend", ["cli", "python"])
def test_an_output_reached_through_a_symlink_is_compared_where_it_leads(frontend, tmp_path):
    vectors = _vectors_dir(tmp_path / "vec")
    (tmp_path / "link").symlink_to(vectors, target_is_directory=True)
    (tmp_path / "via").symlink_to(tmp_path, target_is_directory=True)
    before = snapshot(vectors)
    for out in (tmp_path / "link", tmp_path / "via" / "vec" / "idx"):
        if frontend == "cli":
            assert_one_line_error(run_cli("index", vectors, "--out", out), "output", "the vectors")
        else:
            with pytest.raises(BadInput, match="the vectors"):
                build_index(vectors, out)
    assert snapshot(vectors) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "vec", "via"]


def test_a_file_url_corpus_is_compared_as_its_path(tmp_path, export_cache):
    corpus = _corpus_dir(tmp_path / "texts")
    model = _model_dir(tmp_path / "m")
    before = _written_nothing(tmp_path, export_cache)
    assert_one_line_error(run_cli("encode", corpus.as_uri(), "--model", model, "--runner", "local",
                                  "--out", corpus / "vectors"), "lies inside the corpus file://")
    assert _written_nothing(tmp_path, export_cache) == before


@pytest.mark.parametrize("out", ["s3://bucket/hits.parquet", "file:///tmp/hits.parquet"])
def test_a_url_search_output_is_refused_because_it_is_written_locally(out, tmp_path, export_cache, monkeypatch):
    """search --out writes a local file (encode and index take URLs: their shards and files are
    uploaded); a URL given as a path would land in a directory named 's3:'."""
    monkeypatch.chdir(tmp_path)
    before = _written_nothing(tmp_path, export_cache)
    result = run_cli("search", tmp_path / "index", "--queries", tmp_path / "q.parquet", "--out", out)
    assert_one_line_error(result, f"output {out} is a URL", "local paths")
    assert _written_nothing(tmp_path, export_cache) == before


# --- index --append: the output is the index itself, its input the vectors ---------------------------------

def _built_index(tmp_path: Path) -> tuple[Path, Path]:
    vectors = _vectors_dir(tmp_path / "vec")
    build_index(vectors, tmp_path / "idx", IndexConfig(factory="Flat"))
    return vectors, tmp_path / "idx"


def _append_layout(layout: str, tmp_path: Path) -> tuple[Path, Path, str]:
    """(index dir, vectors dir, what the refusal says) for a layout where appending would replace the vectors."""
    vectors, index = _built_index(tmp_path)
    if layout == "vectors are the index":
        return index, index, "is the vectors"
    if layout == "vectors inside the index":
        shutil.copytree(vectors, index / "vec")
        return index, index / "vec", "holds the vectors"
    shutil.move(index, vectors / "idx")                     # an index moved into its vector directory
    return vectors / "idx", vectors, "lies inside the vectors"


APPEND_LAYOUTS = ["vectors are the index", "vectors inside the index", "index inside the vectors"]


@pytest.mark.parametrize("layout", APPEND_LAYOUTS)
def test_append_index_refuses_vectors_it_would_replace(layout, tmp_path):
    index, vectors, says = _append_layout(layout, tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(BadInput, match=says):
        append_index(index, vectors)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("layout", APPEND_LAYOUTS)
def test_index_append_cli_refuses_vectors_it_would_replace(layout, tmp_path):
    index, vectors, says = _append_layout(layout, tmp_path)
    before = snapshot(tmp_path)
    assert_one_line_error(run_cli("index", vectors, "--out", index, "--append"), f"output {index} {says}")
    assert snapshot(tmp_path) == before


def test_append_index_checks_the_recorded_vectors_too(tmp_path):
    """Without vectors_dir, append reads the directory index.json names: checked all the same."""
    vectors, index = _built_index(tmp_path)
    shutil.move(vectors, index / "vec")
    info = json.loads((index / "index.json").read_text())
    (index / "index.json").write_text(json.dumps({**info, "vectors": str(index / "vec")}))
    before = snapshot(tmp_path)
    with pytest.raises(BadInput, match="holds the vectors"):
        append_index(index)
    assert snapshot(tmp_path) == before


# --- outputs that are in the way: not aliases, but replacing them would still lose data -------------------

@pytest.mark.parametrize("frontend", ["cli", "python"])
@pytest.mark.parametrize("occupant", ["a regular file", "a directory of other files"])
def test_export_does_not_replace_what_is_not_an_export(occupant, frontend, tmp_path, export_cache):
    model = _model_dir(tmp_path / "model" / "m")
    out = tmp_path / "out"
    if occupant == "a regular file":
        out.write_text("notes\n")
        says = "exists and is not a directory"
    else:
        out.mkdir()
        (out / "notes.txt").write_text("notes\n")
        says = "not an embedpipe export"
    before = _written_nothing(tmp_path, export_cache)
    if frontend == "cli":
        assert_one_line_error(run_cli("export", "--model", model, "--out", out), f"output {out}", says)
    else:
        with pytest.raises(BadInput, match=says):
            ensure_exported(ResolvedModel("m", model.resolve(), "0" * 64), out=out)
    assert _written_nothing(tmp_path, export_cache) == before


@pytest.mark.parametrize("command", ["encode", "classify"])
def test_a_regular_file_is_not_replaced_by_an_output_directory(command, tmp_path, export_cache):
    """--out takes any path at the CLI, so the library's refusal (exit code 1) is what a user sees."""
    (tmp_path / "out").write_text("notes\n")
    model = _model_dir(tmp_path / "m")
    data = (write_corpus(tmp_path / "corpus.parquet") if command == "encode"
            else _labeled(tmp_path / "train" / "train.parquet"))
    before = _written_nothing(tmp_path, export_cache)
    args = ["--runner", "local"] if command == "encode" else []
    assert_one_line_error(run_cli(command, data, "--model", model, "--out", tmp_path / "out", *args),
                          "exists and is not a directory")
    assert _written_nothing(tmp_path, export_cache) == before


def test_run_evaluate_refuses_a_directory_as_its_report(tmp_path):
    index = _placeholder_dir(tmp_path / "idx", "index.json")
    queries, qrels = _queries(tmp_path / "q" / "queries.parquet"), _qrels(tmp_path / "r" / "qrels.parquet")
    (tmp_path / "reports").mkdir()
    before = snapshot(tmp_path)
    with pytest.raises(BadInput, match="is a directory"):
        run_evaluate(EvaluateJob(str(index), str(queries), str(qrels), out=str(tmp_path / "reports")))
    assert snapshot(tmp_path) == before
