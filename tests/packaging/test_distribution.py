"""What the distribution ships and declares: the package's data files, a dependency for every import
(and an import for every dependency), the Python it claims, torch's one pin. (docker/ is test_docker.py.)"""

import ast
import functools
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
TESTING = sorted((ROOT / "embedpipe" / "testing").rglob("*.py"))  # may also import the dev extra
LIBRARY = [p for p in (ROOT / "embedpipe").rglob("*.py") if p not in TESTING]
# Declared but run as programs, not imported: each names a file that runs it (checked below).
RUN_NOT_IMPORTED = {"ruff": "Makefile", "moto": "embedpipe/testing/services.py"}   # `ruff check`, `moto_server`


def test_sample_corpus_ships_with_the_package():
    table = pq.read_table(ROOT / "embedpipe" / "data" / "sample_corpus.parquet")
    assert table.column_names == ["id", "text", "label"] and table.num_rows == 300
    assert len(set(table["label"].to_pylist())) == 10
    assert (ROOT / "embedpipe" / "data" / "LICENSE-WordNet.txt").exists()


def imported(paths) -> set[str]:
    """The top-level modules ``paths`` import (lazy imports inside functions too), less the standard
    library, the repository's own packages and the scripts (one benchmark may reuse another's helpers)."""
    found = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    scripts = {path.stem for path in (ROOT / "scripts").glob("*.py")}
    return found - set(sys.stdlib_module_names) - {"embedpipe", "tests"} - scripts


def names(requirements) -> set[str]:
    """pip requirement strings -> normalized distribution names: "ray[default]>=2.43" -> "ray"."""
    return {normalized(re.split(r"[\[<>=!~; ]", r)[0]) for r in requirements}


def normalized(distribution: str) -> str:
    return distribution.lower().replace("_", "-")


@functools.cache
def providers() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()   # reads every installed distribution: once


def distributions(module: str) -> set[str]:
    """The installed distributions that provide ``module``; its own name when none here does (a bench
    extra need not be installed to run the tests)."""
    return {normalized(d) for d in providers().get(module, [module])}


def undeclared(modules, declared) -> list[str]:
    return [m for m in sorted(modules) if not distributions(m) & declared]


DEPENDENCIES = names(PROJECT["dependencies"])
DEV = DEPENDENCIES | names(PROJECT["optional-dependencies"]["dev"])
BENCH = DEV | names(PROJECT["optional-dependencies"]["bench"])


def test_every_package_embedpipe_imports_is_declared():
    """A module importing a distribution pyproject.toml does not list works only as long as something
    else happens to pull it in. embedpipe/testing/ (small real parts for the tests and benchmarks)
    and tests/ may also import what the dev extra declares; scripts/ what the bench extra adds."""
    assert not undeclared(imported(LIBRARY), DEPENDENCIES)
    assert not undeclared(imported([*TESTING, *(ROOT / "tests").rglob("*.py")]), DEV)
    assert not undeclared(imported((ROOT / "scripts").rglob("*.py")), BENCH)


def test_every_declared_package_is_imported():
    """What nothing imports is not a dependency (Ray Data was one, once encode stopped using it)."""
    by_library = set().union(*map(distributions, imported(LIBRARY)))
    assert sorted(DEPENDENCIES - by_library) == []
    everywhere = by_library.union(*map(distributions, imported([*TESTING, *(ROOT / "tests").rglob("*.py"),
                                                                 *(ROOT / "scripts").rglob("*.py")])))
    assert sorted(DEV - everywhere) == sorted(RUN_NOT_IMPORTED)
    for tool, runner in RUN_NOT_IMPORTED.items():
        assert tool in (ROOT / runner).read_text(), f"{tool} is declared for {runner}, which no longer runs it"


def test_the_python_claimed_is_the_one_ruff_checks_for_and_the_image_runs():
    floor = re.fullmatch(r">=3\.(\d+)", PROJECT["requires-python"])
    assert floor, PROJECT["requires-python"]
    assert PYPROJECT["tool"]["ruff"]["target-version"] == f"py3{floor.group(1)}"
    assert sys.version_info >= (3, int(floor.group(1)))
    assert f"-py3{floor.group(1)}-cpu" in (ROOT / "docker" / "Dockerfile").read_text()   # the image runs the floor


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
