"""Pipeline specs: sections read by introspection of the library's configs, errors that name the
key and the line, path resolution, --set and --output-dir. Nothing runs here but the parser and
`embedpipe run --dry-run`."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from embedpipe.cli import main
from embedpipe.errors import EmbedpipeError
from embedpipe.pipeline import load_spec

ROOT = Path(__file__).resolve().parents[2]


def write_spec(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


GOOD = """
    output_dir: out
    ray:
      workers: 3
      cpus_per_actor: 2
    encode:
      corpus: data/corpus.parquet
      pooling: cls
      max_length: 64
      batch_size: 32
    index:
      factory: IVF4,Flat
      max_memory: 1GB
    evaluate:
      queries: q.parquet
      qrels: qrels.parquet
      k_values: [5, 10]
"""


def test_sections_become_the_library_configs(tmp_path):
    from embedpipe.encode import EncodeJob
    from embedpipe.index import IndexConfig
    from embedpipe.retrieval import EvaluateJob

    spec = load_spec(write_spec(tmp_path, GOOD))
    out = (tmp_path / "out").resolve()
    assert spec.output_dir == out
    assert isinstance(spec.encode, EncodeJob)
    assert spec.encode.corpus == str(tmp_path / "data" / "corpus.parquet")   # relative to the spec's directory
    assert spec.encode.out == str(out / "vectors")                           # under output_dir by default
    assert (spec.encode.spec.pooling, spec.encode.spec.max_length, spec.encode.batch_size) == ("cls", 64, 32)
    assert (spec.encode.workers, spec.encode.threads, spec.encode.ray_address) == (3, 2, None)   # from ray:
    assert spec.index.config == IndexConfig(factory="IVF4,Flat", max_memory="1GB")
    assert spec.index.vectors == out / "vectors"                              # encode's out
    assert spec.index.out == out / "index" and spec.index.append is True
    assert isinstance(spec.evaluate, EvaluateJob)
    assert spec.evaluate.index == str(out / "index") and spec.evaluate.k_values == [5, 10]
    assert spec.evaluate.out == str(out / "evaluation.json")
    assert spec.stages() == ["encode", "index", "evaluate"]


def test_each_stage_names_what_it_reads_and_writes(tmp_path):
    from embedpipe.pipeline.schema import STAGE_NAMES
    from embedpipe.pipeline.stages import STAGES

    spec = load_spec(write_spec(tmp_path, GOOD))
    out = tmp_path / "out"
    assert list(STAGES) == ["encode", "index", "evaluate", "classify"]      # the order stages run in
    assert tuple(STAGES) == STAGE_NAMES    # the schema's stage sections: one class each, same order
    assert {name: (STAGES[name].inputs(spec), STAGES[name].outputs(spec)) for name in spec.stages()} == {
        "encode": ({"corpus": str(tmp_path / "data" / "corpus.parquet")}, {"out": str(out / "vectors")}),
        "index": ({"vectors": str(out / "vectors"), "tuning_vectors": None}, {"out": str(out / "index")}),
        "evaluate": ({"index": str(out / "index"), "queries": str(tmp_path / "q.parquet"),
                      "qrels": str(tmp_path / "qrels.parquet")}, {"out": str(out / "evaluation.json")}),
    }
    assert (STAGES["index"].upstream, STAGES["evaluate"].upstream) == (("encode",), ("index",))


def test_set_and_output_dir_override_the_file(tmp_path, monkeypatch):
    path = write_spec(tmp_path, GOOD)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    spec = load_spec(path, output_dir="o2", cwd=elsewhere,
                     overrides=["encode.pooling=max", "encode.normalize=false", "index.target_recall=0.9",
                                "evaluate.k_values=[1, 3]", "encode.corpus=other.parquet", "ray.address=auto"])
    assert spec.output_dir == elsewhere / "o2"                        # command-line paths: relative to the cwd
    assert spec.encode.corpus == str(elsewhere / "other.parquet")
    assert (spec.encode.spec.pooling, spec.encode.spec.normalize) == ("max", False)
    assert spec.index.config.target_recall == 0.9 and spec.evaluate.k_values == [1, 3]
    assert spec.encode.ray_address == "auto"
    assert spec.encode.out == str(elsewhere / "o2" / "vectors")


def test_urls_pass_through_and_absolute_outputs_may_leave_output_dir(tmp_path):
    spec = load_spec(write_spec(tmp_path, f"""
        encode:
          corpus: s3://bucket/corpus/
          out: {tmp_path / 'shared' / 'v'}
    """))
    assert spec.encode.corpus == "s3://bucket/corpus/"
    assert spec.encode.out == str(tmp_path / "shared" / "v")
    assert spec.output_dir == tmp_path / "spec.out"                   # the default: beside the spec


@pytest.mark.parametrize("text, message", [
    ("encode:\n  corpus: c.parquet\n  pooling: cls\n  poling: mean\n",
     "spec.yaml:4: unknown key encode.poling; encode takes: corpus, out,"),
    ("encode:\n  corpus: c.parquet\n  batch_size: many\n",
     "spec.yaml:3: encode.batch_size must be an integer, got 'many'"),
    ("encode:\n  corpus: c.parquet\n  normalize: 1\n",
     "spec.yaml:3: encode.normalize must be true/false, got 1"),
    ("output_dir: o\nencode:\n  pooling: cls\n",
     "spec.yaml:2: encode.corpus is required"),
    ("encode:\n  corpus: c.parquet\nindexx:\n  factory: Flat\n",
     "spec.yaml:3: unknown section 'indexx'"),
    ("encode:\n  corpus: c.parquet\n  out: ../../elsewhere\n",
     "spec.yaml:3: encode.out '../../elsewhere' would land outside output_dir"),
    ("encode:\n  corpus: c.parquet\n  corpus: d.parquet\n",
     "spec.yaml:3: encode.corpus is given twice"),
    ("encode:\n  corpus: c.parquet\n  pooling: [cls\n",
     "spec.yaml:4: not valid YAML"),
    ("encode:\n  corpus: c.parquet\n  pooling: average\n",
     "spec.yaml:3: encode.pooling 'average' is unknown; choose one of: model, cls"),
    ("index:\n  factory: Flat\n",
     "spec.yaml:1: index.vectors is required when there is no encode section"),
    ("index:\n  vectors: v\n  target_recall: 2\n",
     "spec.yaml:3: index.target_recall must be a number in (0, 1], got 2"),
    ("ray:\n  workers: 2\n", "no stage to run"),
    ("encode:\n  corpus: c.parquet\n  out: null\n",
     "spec.yaml:3: encode.out must be a path (under output_dir unless absolute)"),
    ("- encode\n", "spec.yaml:1: a pipeline spec is a mapping of sections"),
])
def test_bad_specs_name_the_key_and_the_line(tmp_path, text, message):
    path = write_spec(tmp_path, text)
    with pytest.raises(EmbedpipeError) as error:
        load_spec(path)
    assert message in str(error.value).replace(str(path), "spec.yaml")


@pytest.mark.parametrize("override, message", [
    ("encode.batch_size=big", "--set encode.batch_size: encode.batch_size must be an integer, got 'big'"),
    ("encode.colour=red", "--set encode.colour: unknown key encode.colour"),
    ("nosuch.key=1", "--set nosuch.key: unknown section 'nosuch'"),
    ("pooling", "expected section.key=value"),
])
def test_bad_overrides_are_named(tmp_path, override, message):
    with pytest.raises(EmbedpipeError) as error:
        load_spec(write_spec(tmp_path, GOOD), overrides=[override])
    assert message in str(error.value)


def test_cli_error_is_one_line_and_writes_nothing(tmp_path):
    path = write_spec(tmp_path, "output_dir: out\nencode:\n  corpus: c.parquet\n  workers: 2\n")
    result = CliRunner().invoke(main, ["run", str(path)])
    assert result.exit_code == 1
    assert result.output.strip() == (f"Error: {path}:4: unknown key encode.workers; encode takes: "
                                      + result.output.split("encode takes: ")[1].strip())
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_the_shipped_specs_pass_a_dry_run(tmp_path):
    for spec in sorted((ROOT / "pipelines").glob("*.yaml")):
        result = CliRunner().invoke(main, ["run", str(spec), "--dry-run", "--output-dir", str(tmp_path / spec.stem)])
        assert result.exit_code == 0, (spec, result.output)
        assert "1. encode" in result.output
        assert not (tmp_path / spec.stem).exists()      # a dry run writes nothing


def test_dry_run_names_inputs_missing_here_but_not_what_an_earlier_stage_writes(tmp_path):
    path = write_spec(tmp_path, GOOD)
    result = CliRunner().invoke(main, ["run", str(path), "--dry-run"])
    assert result.exit_code == 0, result.output
    missing = [line.split("missing here: ")[1] for line in result.output.splitlines() if "missing here" in line]
    assert missing == [f"encode.corpus {tmp_path / 'data' / 'corpus.parquet'}",
                       f"evaluate.queries {tmp_path / 'q.parquet'}", f"evaluate.qrels {tmp_path / 'qrels.parquet'}"]
