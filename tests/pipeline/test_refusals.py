"""`embedpipe run SPEC` refuses a bad spec before it writes anything: a config value out of range
(from `--set` or from a line of the file) and a stage output that is, holds or lies inside a path
the spec reads. One `Error:` line naming the key and where it was given, exit 1, and the directory
exactly as it was: no output_dir, no lock file, no hidden staging or partial directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import TEXTS, assert_one_line_error, run_cli, write_corpus


def listing(root: Path) -> dict[str, tuple[int, int] | None]:
    """Every path under ``root`` (hidden ones too) -> (size, mtime) for files: what a refusal must not change."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else None
            for p in root.rglob("*")}


def spec_lines(sections: dict[str, dict]) -> tuple[str, dict[str, int]]:
    """YAML text of ``sections`` and the line number of each ``section.key`` in it."""
    lines, numbers = ["output_dir: out"], {}
    for section, keys in sections.items():
        lines.append(f"{section}:")
        for key, value in keys.items():
            lines.append(f"  {key}: {value}")
            numbers[f"{section}.{key}"] = len(lines)
    return "\n".join(lines) + "\n", numbers


@pytest.fixture
def sections(tmp_path, tiny_model_dir) -> dict[str, dict]:
    """A spec over real inputs that would run (tiny model, local runner) were nothing wrong with it."""
    write_corpus(tmp_path / "corpus.parquet")
    (tmp_path / "labeled").mkdir()
    write_corpus(tmp_path / "labeled" / "train.parquet", label=["a", "b"] * (len(TEXTS) // 2))
    return {
        "ray": {"cpus_per_actor": 1},
        "encode": {"corpus": "corpus.parquet", "model": tiny_model_dir, "runner": "local", "rows_per_shard": 4},
        "index": {"factory": "Flat"},
        "classify": {"train": "labeled/train.parquet", "model": tiny_model_dir, "poolings": "mean",
                     "heads": "[linear]", "seeds": 1},
    }


def write_spec(tmp_path: Path, sections: dict[str, dict]) -> tuple[Path, dict[str, int]]:
    text, numbers = spec_lines(sections)
    (tmp_path / "spec.yaml").write_text(text)
    return tmp_path / "spec.yaml", numbers


def test_the_spec_the_refusals_start_from_is_good(tmp_path, sections):
    spec, _ = write_spec(tmp_path, sections)
    before = listing(tmp_path)
    result = run_cli("run", spec, "--dry-run")
    assert result.exit_code == 0, result.output
    assert [line.split()[1] for line in result.output.splitlines()[2:]] == ["encode", "index", "classify"]
    assert listing(tmp_path) == before


BAD_VALUES = [
    ("encode.rows_per_shard", "0", "must be an integer of at least 1, got 0"),
    ("encode.batch_size", "-5", "must be an integer of at least 1, got -5"),
    ("encode.window", "0", "must be an integer of at least 1, got 0"),
    ("ray.cpus_per_actor", "0", "must be null or an integer of at least 1, got 0"),
    ("ray.workers", "0", "must be null or an integer of at least 1, got 0"),
    ("index.target_recall", "2", "must be a number in (0, 1], got 2"),
    ("index.recall_margin", "0.5", "must be a number in [0, 0.1], got 0.5"),
    ("classify.test_fraction", "1.5", "must be a number in (0, 1), got 1.5"),
    ("encode.dtype", "float64", "must be one of float32, float16, int8, uint8, binary, ubinary, got 'float64'"),
    ("encode.runner", "spark", "must be one of auto, ray, local, got 'spark'"),
]


@pytest.mark.parametrize("given", ["--set", "file"])
@pytest.mark.parametrize("key, value, problem", BAD_VALUES)
def test_a_value_out_of_range_names_the_key_and_where_it_was_given(tmp_path, sections, key, value, problem, given):
    section, field = key.split(".")
    if given == "file":
        sections[section][field] = value
    spec, numbers = write_spec(tmp_path, sections)
    before = listing(tmp_path)
    if given == "file":
        result, where = run_cli("run", spec), f"{spec}:{numbers[key]}"
    else:
        result, where = run_cli("run", spec, "--set", f"{key}={value}"), f"--set {key}"
    assert_one_line_error(result, f"Error: {where}: {key} {problem}")
    assert listing(tmp_path) == before          # no output_dir, lock, staging or partial directory
    assert not (tmp_path / "out").exists()


def clash(name: str, root: Path, spec: Path, numbers: dict[str, int]) -> tuple[str, str]:
    """(--set, the refusal it gets) for an output that would destroy what the spec reads or writes."""
    corpus, labeled, out = root / "corpus.parquet", root / "labeled", root / "out"
    classify_section = f"{spec}:{numbers['classify.train'] - 1}"    # classify.out is its default: the section's line
    return {
        "encode.out is the corpus":
            (f"encode.out={corpus}", f"--set encode.out: encode.out {corpus} is the encode.corpus {corpus}"),
        "classify.out holds classify.train":
            (f"classify.out={labeled}", f"--set classify.out: classify.out {labeled} holds the classify.train "
                                        f"{labeled / 'train.parquet'}; replacing it would delete it"),
        "index.out holds the vectors":
            (f"index.out={out}", f"--set index.out: index.out {out} holds the index.vectors {out / 'vectors'}"),
        # two outputs, one inside the other: the outer one is named, since replacing it deletes the other
        "classify.out holds classify.save_model":
            (f"classify.save_model={out / 'classify' / 'best'}",
             f"{classify_section}: classify.out {out / 'classify'} holds the classify.save_model "
             f"{out / 'classify' / 'best'}"),
    }[name]


@pytest.mark.parametrize("dry_run", [False, True])
@pytest.mark.parametrize("name", ["encode.out is the corpus", "classify.out holds classify.train",
                                  "index.out holds the vectors", "classify.out holds classify.save_model"])
def test_an_output_that_would_destroy_an_input_is_refused_before_anything_is_written(tmp_path, sections, name,
                                                                                   dry_run):
    spec, numbers = write_spec(tmp_path, sections)
    override, refusal = clash(name, tmp_path, spec, numbers)
    before = listing(tmp_path)
    result = run_cli("run", spec, "--set", override, *(["--dry-run"] if dry_run else []))
    assert_one_line_error(result, f"Error: {refusal}")
    assert listing(tmp_path) == before
    assert not (tmp_path / "out").exists()


def test_an_output_given_in_the_file_is_refused_at_its_line(tmp_path, sections):
    corpus = tmp_path / "corpus.parquet"
    sections["encode"]["out"] = str(corpus)
    spec, numbers = write_spec(tmp_path, sections)
    before = listing(tmp_path)
    assert_one_line_error(run_cli("run", spec), f"Error: {spec}:{numbers['encode.out']}: encode.out {corpus} "
                                                f"is the encode.corpus {corpus}")
    assert listing(tmp_path) == before


def test_an_index_out_holding_published_vectors_is_refused_and_they_survive(tmp_path, sections):
    del sections["classify"]
    spec, _ = write_spec(tmp_path, sections)
    result = run_cli("run", spec)
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    before = listing(tmp_path)
    for extra in ([], ["--dry-run"]):
        result = run_cli("run", spec, "--set", f"index.out={out}", *extra)
        assert_one_line_error(result, f"Error: --set index.out: index.out {out} holds the index.vectors "
                                      f"{out / 'vectors'}; replacing it would delete it")
        assert listing(tmp_path) == before
