"""Round 3's four decisions, each held by a test (docs/reliability.md says why):

- a glob leaves out hidden files (``.a.jsonl``, ``.cache/x.jsonl``) unless its pattern names them
  with a leading dot, as the shell and the directory mode do;
- an ``s3://`` output prefix holding objects embedpipe did not write is refused, as a local
  directory of other files is (``overwrite`` writes beside them and deletes none);
- a prompt that fills the whole window (every vector would be the same) is refused;
- empty or blank string labels in classify are refused, as null labels are."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from embedpipe.errors import BadInput
from embedpipe.formats.corpus import open_corpus
from embedpipe.testing.services import s3_server
from tests.helpers import assert_one_line_error, run_cli, write_corpus


def jsonl(path, *ids):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"id": i, "text": f"text {i}"}) + "\n" for i in ids))


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "corpus"
    jsonl(root / "a.jsonl", "a")
    jsonl(root / ".b.jsonl", "b")                      # an editor's or a sync tool's leftover
    jsonl(root / ".cache" / "c.jsonl", "c")
    jsonl(root / "sub" / "d.jsonl", "d")
    return root


@pytest.mark.parametrize("pattern, files", [
    ("*.jsonl", ["a.jsonl", "sub/d.jsonl"]),          # '*' crosses directories, never into hidden ones
    ("a*", ["a.jsonl"]),
    ("*/*.jsonl", ["sub/d.jsonl"]),
    (".*.jsonl", [".b.jsonl"]),                       # asked for with a leading dot, as in the shell
    (".cache/*.jsonl", [".cache/c.jsonl"]),
    ("[.a]*.jsonl", ["a.jsonl"]),
])
def test_a_glob_leaves_out_hidden_files_unless_named(folder, pattern, files):
    corpus = open_corpus(f"{folder}/{pattern}")
    assert [f.removeprefix(f"{folder}/") for f in corpus.files] == files


def test_the_directory_mode_agrees(folder):
    assert [f.removeprefix(f"{folder}/") for f in open_corpus(str(folder)).files] == ["a.jsonl", "sub/d.jsonl"]


def test_a_hidden_directory_named_in_the_path_is_read(tmp_path):
    jsonl(tmp_path / ".work" / "c" / "x.jsonl", "x")
    assert len(open_corpus(f"{tmp_path}/.work/c/*.jsonl").files) == 1


def test_an_object_store_prefix_holding_foreign_objects(tmp_path, tiny_model_dir, monkeypatch):
    with s3_server(tmp_path) as server:
        for name, value in server.env.items():
            if name.startswith("AWS_"):
                monkeypatch.setenv(name, value)
        filesystem, _ = pafs.FileSystem.from_uri("s3://embedpipe/x")
        with filesystem.open_output_stream("embedpipe/out/notes.txt") as f:
            f.write(b"someone's notes")
        corpus = write_corpus(tmp_path / "c.parquet")
        args = ["encode", corpus, "--model", tiny_model_dir, "--runner", "local", "--out", "s3://embedpipe/out"]
        assert_one_line_error(run_cli(*args), "did not write", "'notes.txt'", "--overwrite")
        result = run_cli(*args, "--overwrite")
        assert result.exit_code == 0, result.output
        with filesystem.open_input_stream("embedpipe/out/notes.txt") as f:
            assert f.read() == b"someone's notes"                        # written beside, never deleted
        again = run_cli(*args)                                           # complete now: nothing to do
        assert again.exit_code == 0 and '"up_to_date": true' in again.output, again.output


@pytest.mark.parametrize("prompt, extra", [("word " * 80, []), ("a b c d e f g", ["--max-length", "8"]),
                                           ("x " * 62, [])])
def test_a_prompt_that_fills_the_window_is_refused(tiny_model_dir, tmp_path, prompt, extra):
    corpus = write_corpus(tmp_path / "c.parquet")
    line = assert_one_line_error(run_cli("encode", corpus, "--model", tiny_model_dir, "--runner", "local",
                                         "--out", tmp_path / "v", "--prompt", prompt, *extra),
                                 "fills all", "every vector would be the same")
    assert "--max-length" in line
    assert not (tmp_path / "v").exists()


def test_a_prompt_that_leaves_room_encodes(tiny_model_dir, tmp_path):
    corpus = write_corpus(tmp_path / "c.parquet")
    result = run_cli("encode", corpus, "--model", tiny_model_dir, "--runner", "local", "--out", tmp_path / "v",
                     "--prompt", "a b c d e f", "--max-length", "9")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("labels", [["a", "", "b"] * 10, ["a", "   ", "b"] * 10, ["a", "\t\n", "b"] * 10])
def test_empty_string_labels_are_refused(tiny_model_dir, tmp_path, labels):
    texts = [f"text number {i} about cats" for i in range(len(labels))]
    pq.write_table(pa.table({"text": texts, "label": labels}), tmp_path / "t.parquet")
    assert_one_line_error(run_cli("classify", tmp_path / "t.parquet", "--model", tiny_model_dir,
                                  "--out", tmp_path / "r"), "empty label", "row 1")
    assert not (tmp_path / "r").exists()


def test_labels_that_look_empty_but_are_not_are_kept(tmp_path):
    from embedpipe.formats.labeled import read_labeled

    pq.write_table(pa.table({"text": ["a", "b", "c"], "label": ["0", "-", "None"]}), tmp_path / "t.parquet")
    assert read_labeled(str(tmp_path / "t.parquet"), "text", "label").labels == ["0", "-", "None"]
    with pytest.raises(BadInput, match="empty label"):
        pq.write_table(pa.table({"text": ["a", "b"], "label": ["x", ""]}), tmp_path / "u.parquet")
        read_labeled(str(tmp_path / "u.parquet"), "text", "label")
