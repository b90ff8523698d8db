"""Round 3, class 7: every path field of a pipeline spec that takes a URL on the command line takes it
in a spec, kept as the URL (never flattened into a path like ``s3:/b/v``): encode.corpus, encode.out,
index.vectors, index.tuning_vectors, evaluate.queries and qrels, classify.train and test. A spec that
writes its vectors to an object store runs, and a rerun finds them complete there."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from embedpipe.errors import EmbedpipeError
from embedpipe.pipeline.run import check_outputs
from embedpipe.pipeline.schema import load_spec
from embedpipe.testing.services import s3_server
from tests.helpers import run_cli, write_corpus


def write_spec(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(textwrap.dedent(text).lstrip())
    return path


URL = "s3://bucket/some/where"


@pytest.mark.parametrize("section, key, attribute", [
    ("encode", "corpus", lambda s: s.encode.corpus),
    ("encode", "out", lambda s: s.encode.out),
    ("index", "vectors", lambda s: s.index.vectors),
    ("index", "tuning_vectors", lambda s: s.index.config.tuning_vectors),
    ("evaluate", "queries", lambda s: s.evaluate.queries),
    ("evaluate", "qrels", lambda s: s.evaluate.qrels),
    ("classify", "train", lambda s: s.classify.train),
    ("classify", "test", lambda s: s.classify.test),
])
@pytest.mark.parametrize("url", [URL, URL + "/", "gs://b/x", "memory://x/y", "file:///tmp/x"])
def test_a_url_in_a_spec_stays_the_url(tmp_path, section, key, attribute, url):
    fields = {"encode": {"corpus": "c.parquet"}, "index": {"vectors": "v"},
              "evaluate": {"index": "i", "queries": "q.parquet", "qrels": "r.parquet"},
              "classify": {"train": "t.parquet"}}[section]
    fields[key] = url
    body = "\n".join(f"  {k}: {v}" for k, v in fields.items())
    spec = load_spec(write_spec(tmp_path, f"{section}:\n{body}\n"))
    assert str(attribute(spec)) == url


@pytest.mark.parametrize("section, key", [("index", "out"), ("evaluate", "out"), ("classify", "out"),
                                          ("classify", "save_model")])
def test_outputs_the_cli_keeps_local_stay_local_in_a_spec(tmp_path, section, key):
    fields = {"index": {"vectors": "v"}, "evaluate": {"index": "i", "queries": "q.parquet", "qrels": "r.parquet"},
              "classify": {"train": "t.parquet"}}[section]
    fields[key] = URL
    body = "\n".join(f"  {k}: {v}" for k, v in fields.items())
    with pytest.raises(EmbedpipeError, match="is a URL; outputs are local paths"):
        load_spec(write_spec(tmp_path, f"{section}:\n{body}\n"))


def test_a_url_output_that_is_a_url_input_is_refused(tmp_path):
    spec = load_spec(write_spec(tmp_path, f"""
        encode:
          corpus: {URL}/corpus
          out: {URL}
    """))
    with pytest.raises(EmbedpipeError, match="encode.out s3://bucket/some/where overlaps the encode.corpus"):
        check_outputs(spec)


def test_a_spec_writing_vectors_to_an_object_store_runs_and_reruns(tmp_path, tiny_model_dir, monkeypatch):
    with s3_server(tmp_path) as server:
        for name, value in server.env.items():
            if name.startswith("AWS_"):
                monkeypatch.setenv(name, value)
        write_corpus(tmp_path / "c.parquet")
        spec = write_spec(tmp_path, f"""
            output_dir: out
            encode:
              corpus: c.parquet
              model: {tiny_model_dir}
              out: s3://embedpipe/run/vectors
            index:
              factory: Flat
        """)
        first = run_cli("run", spec)
        assert first.exit_code == 0, first.output
        index_info = json.loads((tmp_path / "out" / "index" / "index.json").read_text())
        assert index_info["n"] == 10 and index_info["vectors"] == "s3://embedpipe/run/vectors"
        again = run_cli("run", spec)
        assert again.exit_code == 0, again.output
        assert "skip" in again.output.lower(), again.output
