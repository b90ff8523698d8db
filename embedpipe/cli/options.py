"""What every command shares: common options, options built from config fields, and library
errors as click's one-line error.

    @click.command()
    @from_config(ClassifyJob, "learning_rate", "--lr", help="...")  # default (and choices) from the field
    @user_errors(flags={"learning_rate": "--lr"})   # fields whose flag is not --field-name
    def classify_cmd(...): ...
"""

from __future__ import annotations

import functools
import sys

import click

from .. import checks
from ..errors import EmbedpipeError, first_line
from ..signals import Interrupted, signal_received, stop_on_signals


def flag_of(field: str, value: str | None = None, flags: dict[str, str] | None = None) -> str:
    """A config field (and the value to set) as this command's flag: ``rows_per_shard`` ->
    ``--rows-per-shard``, ``empty_text=skip`` -> ``--empty-text skip``, ``overwrite=true`` ->
    ``--overwrite``, ``exact=false`` -> ``--no-exact``; ``flags`` names fields whose flag differs."""
    flag = (flags or {}).get(field) or "--" + field.replace("_", "-")
    if value in ("true", "false"):
        return flag if value == "true" else "--no-" + flag.removeprefix("--")
    return f"{flag} {value}" if value else flag


def user_errors(fn=None, *, flags: dict[str, str] | None = None):
    """Turn an EmbedpipeError into ``Error: <message>`` and exit code 1, without a traceback; the
    config fields it names are shown as this command's flags. SIGTERM and Ctrl-C stop the command
    the same way: ``Error: stopped by SIGTERM; ...`` and exit code 128 + N (143, 130)."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                with stop_on_signals():
                    return fn(*args, **kwargs)
            except Interrupted as stop:  # SIGTERM or Ctrl-C: one line, and the exit code a shell expects
                click.echo(f"Error: {stop}", err=True)
                sys.exit(stop.exit_code)
            except Exception as e:
                if signal_received() is not None:  # the error is how the signal surfaced (Ray wraps it)
                    stop = Interrupted(signal_received(), first_line(e) if isinstance(e, EmbedpipeError) else "")
                    click.echo(f"Error: {stop}", err=True)
                    sys.exit(stop.exit_code)
                if not isinstance(e, EmbedpipeError):
                    raise
                raise click.ClickException(e.render(lambda field, value: flag_of(field, value, flags))) from None

        return wrapper

    return decorate(fn) if fn is not None else decorate


class ConfigOption(click.Option):
    """A click option made by ``from_config``: it remembers the config field it stands for, so a test
    can prove that every option naming a config field takes that field's default and choices."""

    def __init__(self, *param_decls, config_field: tuple[type, str], to_cli=None, **attrs):
        super().__init__(*param_decls, **attrs)
        self.config_field = config_field
        self.to_cli = to_cli


def from_config(config: type, field: str, *param_decls: str, to_cli=None, **attrs):
    """``click.option`` for the config field ``field``: its default is the field's default (shown in
    --help), and a field declared with ``checks.choice`` gives its choices; ``to_cli`` turns a default
    that is not a command-line value (a tuple of names) into one. The flag defaults to ``--field-name``
    and the parameter's name to the field's. Defaults and choices are never restated here."""
    if "default" in attrs or "type" in attrs and checks.choices_of(config, field) is not None:
        raise TypeError(f"--{field}: the default and choices come from {config.__name__}.{field}")
    default = checks.default_of(config, field)
    if to_cli is not None and default is not None:
        default = to_cli(default)
    if (choices := checks.choices_of(config, field)) is not None:
        attrs["type"] = click.Choice([c for c in choices if c is not None])
    attrs.setdefault("show_default", default is not None and default is not False)
    decls = param_decls or ("--" + field.replace("_", "-"),)
    if not any(d.isidentifier() for d in decls):
        decls = (*decls, field)
    return click.option(*decls, cls=ConfigOption, config_field=(config, field), to_cli=to_cli, default=default,
                        **attrs)


model_option = click.option("--model", "model", default=None, metavar="NAME_OR_DIR",
                            help="Hugging Face model id or local directory [default: bundled all-MiniLM-L6-v2].")
optimize_option = click.option("--optimize", type=click.Choice(["O1", "O2", "O3"]), default=None,
                               help="onnxruntime graph optimization level applied at export.")
quantize_option = click.option("--quantize", type=click.Choice(["int8"]), default=None,
                               help="Dynamic int8 by this CPU's instruction set (avx512_vnni / avx512 / avx2 / "
                                    "arm64; $EMBEDPIPE_INT8_ISA names another), kept only if it stays close to fp32 on "
                                    "sample texts (export.json records the recipe and its cosine).")


def prompt_options(what: str):
    """--prompt-name / --prompt / --no-prompt, as one ``prompt`` choice: ``what`` says whose prompt
    (the documents' for encode, the queries' for search). The command gets ``prompt_name`` and
    ``prompt`` (None, a text, or "" for --no-prompt)."""

    def decorate(fn):
        fn = click.option("--no-prompt", "no_prompt", is_flag=True,
                          help=f"Put no prompt before the {what}.")(fn)
        fn = click.option("--prompt", "prompt", default=None, metavar="TEXT",
                          help=f"Put this text before each of the {what}.")(fn)
        fn = click.option("--prompt-name", "prompt_name", default=None, metavar="NAME",
                          help=f"Put the model's prompt NAME (config_sentence_transformers.json) before each of "
                               f"the {what}.")(fn)

        @functools.wraps(fn)
        def wrapper(*args, prompt_name=None, prompt=None, no_prompt=False, **kwargs):
            if sum((prompt_name is not None, prompt is not None, no_prompt)) > 1:
                raise click.UsageError("give one of --prompt-name, --prompt and --no-prompt")
            return fn(*args, prompt_name=prompt_name, prompt="" if no_prompt else prompt, **kwargs)

        return wrapper

    return decorate
