"""What can be checked of the Docker image without a Docker engine, and the package's data files."""

import re
from pathlib import Path

import pyarrow.parquet as pq
from click.testing import CliRunner

from embedpipe.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_dockerfile_copies_files_that_exist():
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    sources = [s for line in re.findall(r"^COPY (.+)$", dockerfile, re.M) for s in line.split()[:-1]
               if not s.startswith("--")]  # flags such as --chown=ray:users
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source


def test_dockerfile_entrypoint_commands_work():
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["embedpipe"]' in dockerfile
    for args in (["--help"], ["export", "--help"], ["encode", "--help"]):
        assert CliRunner().invoke(main, args).exit_code == 0


def test_sample_corpus_ships_with_the_package():
    table = pq.read_table(ROOT / "embedpipe" / "data" / "sample_corpus.parquet")
    assert table.column_names == ["id", "text", "label"] and table.num_rows == 300
    assert len(set(table["label"].to_pylist())) == 10
    assert (ROOT / "embedpipe" / "data" / "LICENSE-WordNet.txt").exists()
