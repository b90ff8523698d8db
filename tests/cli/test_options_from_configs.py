"""Every CLI option that stands for a config field (or for an argument of the library function a
command calls) takes its default and its choices from that field: one source, so `--help`, the CLI, a
pipeline spec and Python cannot drift apart. An option restated by hand with a field's name fails
here, whatever value it restates."""

import click
import pytest

from embedpipe import checks
from embedpipe.classify.job import ClassifyJob
from embedpipe.classify.merge import merge_reports
from embedpipe.classify.predict import predict_file
from embedpipe.cli import main
from embedpipe.cli.options import ConfigOption
from embedpipe.encode.encoder import EncoderSpec
from embedpipe.encode.job import EncodeJob
from embedpipe.index.config import IndexConfig
from embedpipe.retrieval.evaluate import evaluate_with_run
from embedpipe.retrieval.search import search_file

# What each command builds or calls: its options' defaults and choices must come from these.
SOURCES = {
    "export": (EncoderSpec,),
    "encode": (EncodeJob, EncoderSpec),
    "index": (IndexConfig,),
    "search": (search_file,),
    "evaluate": (evaluate_with_run,),   # what the command calls (EvaluateJob is the pipeline's, same K_VALUES)
    "classify": (ClassifyJob,),
    "predict": (predict_file,),
    "classify-merge": (merge_reports,),
    "run": (),                          # a spec file: its sections are the configs above
    "submit": (),
}


def fields_with_defaults(source) -> set[str]:
    import dataclasses
    import inspect

    if dataclasses.is_dataclass(source):
        return {f.name for f in dataclasses.fields(source)
                if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}
    return {name for name, p in inspect.signature(source).parameters.items() if p.default is not p.empty}


def names_of(option: click.Option) -> set[str]:
    """The parameter's name and every flag's, as a field would be named: --rows-per-shard -> rows_per_shard."""
    return {option.name, *(flag.lstrip("-").replace("-", "_") for flag in option.opts + option.secondary_opts)}


def test_every_command_says_what_it_builds():
    assert set(main.commands) == set(SOURCES)


@pytest.mark.parametrize("command", sorted(SOURCES))
def test_no_option_restates_a_field_by_hand(command):
    fields = set().union(*map(fields_with_defaults, SOURCES[command])) if SOURCES[command] else set()
    restated = [option.opts[0] for option in main.commands[command].params
                if isinstance(option, click.Option) and not isinstance(option, ConfigOption)
                and names_of(option) & fields]
    assert not restated, f"embedpipe {command}: {restated} name config fields; build them with from_config"


@pytest.mark.parametrize("command", sorted(SOURCES))
def test_config_options_take_the_fields_default_and_choices(command):
    for option in main.commands[command].params:
        if not isinstance(option, ConfigOption):
            continue
        source, field = option.config_field
        assert source in SOURCES[command], f"{option.opts[0]} comes from {source}, not what {command} builds"
        default = checks.default_of(source, field)
        expected = option.to_cli(default) if option.to_cli and default is not None else default
        assert option.default == expected, f"{command} {option.opts[0]}"
        if (choices := checks.choices_of(source, field)) is not None:
            assert tuple(option.type.choices) == tuple(c for c in choices if c is not None)
        if (each := checks.each_of(source, field)) is not None:
            assert option.callback(None, option, ",".join(each)) == tuple(each)
            with pytest.raises(click.BadParameter):
                option.callback(None, option, "no-such-name")


def test_the_library_refuses_what_the_cli_does_not_offer():
    """The CLI's choices are the config's: a value outside them is refused by the config itself too."""
    from embedpipe.errors import ConfigError

    with pytest.raises(ConfigError, match="runner must be one of auto, ray, local"):
        EncodeJob("c.parquet", runner="spark")
    with pytest.raises(ConfigError, match="device must be one of"):
        ClassifyJob(train="t.parquet", device="tpu")
    with pytest.raises(ConfigError, match="metric must be one of ip, l2"):
        IndexConfig(metric="cosine")


@pytest.mark.parametrize("name", sorted(main.commands))
def test_every_option_says_what_it_is_for(name):
    """`--help` (and docs/cli.md, generated from it) explains every option: none is a bare flag."""
    bare = [p.opts[0] for p in main.commands[name].params
            if isinstance(p, click.Option) and not (p.help or "").strip() and not p.hidden]
    assert not bare, f"{name}: options without help text: {bare}"
