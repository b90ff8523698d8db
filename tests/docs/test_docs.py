"""The docs say what the code does: docs/cli.md is the commands' own --help, every command and option is in
it, docs/architecture.md's module map lists exactly the package's modules, and the README's docs map and
every relative link point at pages that exist."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import click
import pytest

from embedpipe.cli import main as cli_group

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = ROOT / "README.md"


def _load_generator():
    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "scripts" / "cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cli_reference = _load_generator()


def _commands() -> list[tuple[str, click.Command]]:
    """('embedpipe', the group) and ('embedpipe NAME', command) for every command."""
    ctx = click.Context(cli_group, info_name="embedpipe")
    return [("embedpipe", cli_group)] + [(f"embedpipe {name}", cli_group.get_command(ctx, name))
                                         for name in cli_group.list_commands(ctx)]


def _sections(text: str) -> dict[str, str]:
    """docs/cli.md cut at its '## `embedpipe ...`' headings: {'embedpipe encode': that section's text}."""
    parts = re.split(r"^## `([^`]+)`$", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2]))


def test_cli_md_is_what_the_generator_writes():
    written = (DOCS / "cli.md").read_text(encoding="utf-8")
    assert written == cli_reference.render(cli_group), "docs/cli.md is stale: run python scripts/cli_reference.py"


def test_the_generator_check_flag_tells_stale_from_current(tmp_path):
    stale = tmp_path / "cli.md"
    stale.write_text("# CLI reference\n", encoding="utf-8")
    assert cli_reference.main(["--check", "--out", str(stale)]) == 1
    assert cli_reference.main(["--out", str(stale)]) == 0
    assert cli_reference.main(["--check", "--out", str(stale)]) == 0
    assert stale.read_text(encoding="utf-8") == cli_reference.render(cli_group)


def test_the_rendered_reference_does_not_depend_on_the_terminal_or_the_machine(monkeypatch, tmp_path):
    first = cli_reference.render(cli_group)
    monkeypatch.setenv("COLUMNS", "40")
    monkeypatch.setenv("EMBEDPIPE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("RAY_ADDRESS", "10.1.2.3:6379")
    assert cli_reference.render(cli_group) == first
    assert str(Path.home()) not in first and str(tmp_path) not in first


def test_the_generator_writes_home_and_cache_paths_by_their_names(monkeypatch):
    monkeypatch.setenv("EMBEDPIPE_CACHE", "/srv/cache/embedpipe")
    text = f"[default: /srv/cache/embedpipe] or {Path.home()}/.cache/embedpipe"
    assert cli_reference.machine_neutral(text) == "[default: $EMBEDPIPE_CACHE] or ~/.cache/embedpipe"


def _undocumented(command: click.Command, section: str) -> list[str]:
    """The arguments and flags of ``command`` that its docs/cli.md section does not name."""
    missing = []
    for param in command.params:
        if isinstance(param, click.Argument):
            if param.human_readable_name not in section:
                missing.append(param.human_readable_name)
            continue
        for flag in param.opts + param.secondary_opts:  # secondary: the --no-x of a --x/--no-x flag
            if not re.search(rf"`[^`\n]*(?<![\w-]){re.escape(flag)}(?![\w-])[^`\n]*`", section):
                missing.append(flag)
    return missing


@pytest.mark.parametrize("path, command", _commands(), ids=[path for path, _ in _commands()])
def test_every_command_and_every_option_is_in_cli_md(path, command):
    sections = _sections((DOCS / "cli.md").read_text(encoding="utf-8"))
    assert path in sections, f"{path} has no section in docs/cli.md"
    missing = _undocumented(command, sections[path])
    assert not missing, f"{path}: {missing} undocumented in docs/cli.md (run python scripts/cli_reference.py)"


def test_an_option_added_without_regenerating_is_caught():
    """The check above can fail: encode with one more option is not what docs/cli.md documents."""
    encode = cli_group.get_command(click.Context(cli_group), "encode")
    grown = click.Command("encode", params=[*encode.params, click.Option(["--shiny/--no-shiny"], help="new")],
                          help=encode.help)
    section = _sections((DOCS / "cli.md").read_text(encoding="utf-8"))["embedpipe encode"]
    assert _undocumented(grown, section) == ["--shiny", "--no-shiny"]


# --- docs/architecture.md's module map ---------------------------------------------------------------------

MODULE_MAP = re.compile(r"<!-- module map: begin -->\s*```text\n(.*?)```\s*<!-- module map: end -->", re.DOTALL)


def _mapped_modules() -> list[str]:
    """The embedpipe/...py paths the architecture page's module map lists, one per line, in order."""
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    found = MODULE_MAP.search(text)
    assert found, "docs/architecture.md has no module map between <!-- module map: begin/end --> markers"
    return [line.split()[0] for line in found.group(1).splitlines() if line.strip()]


def test_the_module_map_lists_every_module_of_the_package_and_no_other():
    mapped = _mapped_modules()
    assert len(mapped) == len(set(mapped)), "docs/architecture.md lists a module twice"
    on_disk = {path.relative_to(ROOT).as_posix() for path in (ROOT / "embedpipe").rglob("*.py")}
    missing = sorted(on_disk - set(mapped))
    stale = sorted(set(mapped) - on_disk)
    assert not missing and not stale, (f"docs/architecture.md's module map lacks {missing} and names modules "
                                       f"that do not exist: {stale}")


def test_every_module_in_the_map_says_its_job():
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    lines = [line for line in MODULE_MAP.search(text).group(1).splitlines() if line.strip()]
    silent = [line.split()[0] for line in lines if len(line.split()) < 3]
    assert not silent, f"module map lines without a job: {silent}"


# --- the README's docs map and the relative links ------------------------------------------------------------

LINK = re.compile(r"\]\(([^)\s]+)\)")


def _pages() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def test_every_docs_page_is_linked_from_the_readme():
    readme = README.read_text(encoding="utf-8")
    linked = {target.split("#")[0] for target in LINK.findall(readme)}
    unlinked = [page.relative_to(ROOT).as_posix() for page in sorted(DOCS.rglob("*.md"))
                if page.relative_to(ROOT).as_posix() not in linked]
    assert not unlinked, f"README.md's docs map does not link {unlinked}"


@pytest.mark.parametrize("page", _pages(), ids=lambda page: page.relative_to(ROOT).as_posix())
def test_relative_links_point_at_files_that_exist(page):
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.DOTALL)  # code is not links
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL or an anchor on the same page
        if not (page.parent / target.split("#")[0]).exists():
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)} links to missing files: {broken}"


def test_readme_stays_a_front_door():
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 300
