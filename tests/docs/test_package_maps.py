"""A package docstring that maps its modules ("    pooling.py   token states -> ...") names exactly the
package's modules and subpackages: a module added, renamed or removed without the map following fails here.
The docstrings are read with ast, so no package is imported (Ray, torch) to check them."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "embedpipe"

# A map line: indented, a module (name.py) or subpackage (name/), then at least two spaces and its job.
# Continuation lines of a job start with words, not with such a name, so they are not entries.
MAP_ENTRY = re.compile(r"^[ \t]+([a-z_][a-z0-9_]*(?:\.py|/))[ \t]{2,}\S", re.MULTILINE)


def listed_entries(docstring: str) -> list[str]:
    """The modules and subpackages a package docstring maps, in order: ['pooling.py', 'runners/', ...]."""
    return MAP_ENTRY.findall(docstring)


def package_entries(package_dir: Path) -> set[str]:
    """What a package holds: its modules but __init__.py, and its subpackages (a folder with __init__.py)."""
    modules = {path.name for path in package_dir.glob("*.py") if path.name != "__init__.py"}
    subpackages = {f"{path.name}/" for path in package_dir.iterdir() if (path / "__init__.py").is_file()}
    return modules | subpackages


def package_docstring(package_dir: Path) -> str:
    """The docstring of a package's __init__.py as written (not dedented: a map is told by its indent)."""
    tree = ast.parse((package_dir / "__init__.py").read_text(encoding="utf-8"))
    return ast.get_docstring(tree, clean=False) or ""


def map_disagreements(package_dir: Path) -> tuple[list[str], list[str]]:
    """(unlisted, missing): what the package holds that its docstring's map leaves out, and what the map
    names that the package does not hold. Both empty for a package without a map."""
    listed = listed_entries(package_docstring(package_dir))
    if not listed:
        return [], []
    held = package_entries(package_dir)
    return sorted(held - set(listed)), sorted(set(listed) - held)


def _mapped_packages() -> list[Path]:
    packages = sorted(init.parent for init in PACKAGE.rglob("__init__.py"))
    return [package for package in packages if listed_entries(package_docstring(package))]


def _package_id(package: Path) -> str:
    return package.relative_to(PACKAGE.parent).as_posix()


def test_the_packages_that_map_their_modules_are_found():
    """The map pattern still recognises the docstrings: were it to stop matching, every check below would
    pass over nothing."""
    found = {_package_id(package) for package in _mapped_packages()}
    assert {"embedpipe/encode", "embedpipe/encode/runners", "embedpipe/formats", "embedpipe/index",
            "embedpipe/model", "embedpipe/classify", "embedpipe/storage", "embedpipe/testing"} <= found


@pytest.mark.parametrize("package", _mapped_packages(), ids=_package_id)
def test_a_package_map_names_exactly_the_packages_modules(package):
    unlisted, missing = map_disagreements(package)
    assert not unlisted and not missing, (f"{_package_id(package)}/__init__.py's docstring does not list "
                                          f"{unlisted} and lists {missing}, which do not exist")


def test_a_map_that_has_drifted_is_caught(tmp_path):
    """The check can fail both ways: a module the map leaves out, and one it names that is gone."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "sub" / "__init__.py").write_text("", encoding="utf-8")
    (package / "data").mkdir()  # a folder without __init__.py is data, not a subpackage
    for name in ("kept.py", "added.py"):
        (package / name).write_text("", encoding="utf-8")
    (package / "__init__.py").write_text('"""A package.\n\n'
                                         "    kept.py     stays\n"
                                         "    renamed.py  was renamed; its job runs on\n"
                                         "                onto a second line\n"
                                         '    sub/        a subpackage\n"""\n', encoding="utf-8")
    assert map_disagreements(package) == (["added.py"], ["renamed.py"])
