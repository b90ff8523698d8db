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


def test_every_package_embedpipe_imports_is_declared():
    """A module of the package importing a distribution pyproject.toml does not list works only as
    long as something else happens to pull it in. embedpipe/testing/ (small real parts for the
    tests and benchmarks) may also import what the dev extra declares."""
    import ast
    import importlib.metadata
    import sys

    import tomllib

    def imports(paths) -> set[str]:
        found = set()
        for path in paths:
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    found |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module.split(".")[0])
        return found - set(sys.stdlib_module_names) - {"embedpipe"}

    def names(requirements) -> set[str]:
        return {re.split(r"[\[<>=!~; ]", r)[0].lower().replace("_", "-") for r in requirements}

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    providers = importlib.metadata.packages_distributions()

    def undeclared(modules, declared):
        return [m for m in sorted(modules)
                if not {d.lower().replace("_", "-") for d in providers.get(m, [])} & declared]

    testing = sorted((ROOT / "embedpipe" / "testing").rglob("*.py"))
    library = [p for p in (ROOT / "embedpipe").rglob("*.py") if p not in testing]
    assert testing and library
    assert not undeclared(imports(library), names(project["dependencies"]))
    assert not undeclared(imports(testing), names(project["dependencies"] + project["optional-dependencies"]["dev"]))


def test_torch_is_pinned_once_to_its_cpu_build():
    """torch-cpu.txt holds torch's one pinned version and PyTorch's CPU index; the Makefile and the
    Dockerfile install it, nothing else pins torch, and that version is the one tested here."""
    from importlib.metadata import version

    pins = (ROOT / "torch-cpu.txt").read_text()
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in pins
    linux = re.search(r'^torch==([\w.]+)\+cpu; sys_platform == "linux"$', pins, re.M)
    assert linux and re.search(rf'^torch=={re.escape(linux.group(1))}; sys_platform != "linux"$', pins, re.M)
    assert version("torch").split("+")[0] == linux.group(1)
    assert "-r torch-cpu.txt" in (ROOT / "Makefile").read_text()
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert "RUN pip install -r torch-cpu.txt" in dockerfile and re.search(r"^COPY .*torch-cpu\.txt", dockerfile, re.M)
    for name in ("Makefile", "docker/Dockerfile", "README.md", "pyproject.toml"):
        assert not re.search(r"torch==\d", (ROOT / name).read_text()), name
