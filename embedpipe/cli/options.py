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
from ..signals import DEFAULT_STOP_GRACE_S, STOP_GRACE_ENV, Interrupted, signal_received, stop_on_signals


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
                with stop_on_signals(checks.env_seconds(STOP_GRACE_ENV, DEFAULT_STOP_GRACE_S)):
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

    def __init__(self, *param_decls, config_field: tuple[object, str], to_cli=None, **attrs):
        super().__init__(*param_decls, **attrs)
        self.config_field = config_field
        self.to_cli = to_cli


def comma_names(allowed, flag: str):
    """A callback turning ``a,b`` into ('a', 'b'), each one of ``allowed`` (None stays None)."""

    def convert(ctx, param, text: str | None) -> tuple[str, ...] | None:
        if text is None:
            return None
        names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
        bad = [n for n in names if n not in allowed]
        if not names or bad:
            raise click.BadParameter(f"{', '.join(bad) or 'nothing'} is not one of: {', '.join(allowed)}",
                                     param_hint=flag)
        return names

    return convert


def from_config(config, field: str, *param_decls: str, to_cli=None, **attrs):
    """``click.option`` for ``field`` of ``config`` (a config dataclass, or the library function a
    command calls without one): its default is the field's default (shown in --help); a field declared
    with ``checks.choice`` gives its choices, one declared with ``checks.names_from`` takes a
    comma-separated list of its names. ``to_cli`` writes a default that is not a command-line value
    (layers as a tuple) as one. The flag defaults to ``--field-name``, the parameter to the field's
    name. Defaults and choices are never restated here."""
    choices, each = checks.choices_of(config, field), checks.each_of(config, field)
    if "default" in attrs or (choices or each) and ("type" in attrs or "callback" in attrs):
        raise TypeError(f"{field}: its default and choices come from the config, not the option")
    default = checks.default_of(config, field)
    decls = param_decls or ("--" + field.replace("_", "-"),)
    if each is not None:
        to_cli = to_cli or ",".join
        attrs["callback"] = comma_names(each, decls[0].split("/")[0])
        attrs.setdefault("help", "")
        attrs["help"] += f"{' ' if attrs['help'] else ''}Comma-separated, from: {', '.join(each)}."
    if to_cli is not None and default is not None:
        default = to_cli(default)
    if choices is not None:
        attrs["type"] = click.Choice([c for c in choices if c is not None])
    attrs.setdefault("show_default", default is not None and default is not False)
    if not any(d.isidentifier() for d in decls):
        decls = (*decls, field)
    return click.option(*decls, cls=ConfigOption, config_field=(config, field), to_cli=to_cli, default=default,
                        **attrs)


def export_options(config):
    """--optimize and --quantize, from ``config``'s fields of those names (EncoderSpec, for export and
    encode)."""

    def decorate(fn):
        fn = from_config(config, "quantize",
                         help="Dynamic int8 by this CPU's instruction set (avx512_vnni / avx512 / avx2 / arm64; "
                              "$EMBEDPIPE_INT8_ISA names another), kept only if it stays close to fp32 on sample "
                              "texts (export.json records the recipe and its cosine).")(fn)
        return from_config(config, "optimize", help="onnxruntime graph optimization level applied at export.")(fn)

    return decorate


def device_options(config, what: str = "texts", backend: bool = True, field: str = "device"):
    """--device (and --backend, --precision when ``backend``), from ``config``'s fields of those names
    (``field`` for the device): where ``what`` are encoded (encode/devices.py)."""

    def decorate(fn):
        if backend:
            fn = from_config(config, "precision",
                             help="Precision of the torch backend: auto is bf16 on a GPU that has it (else "
                                  "fp16), fp32 on a CPU; token states are pooled in fp32 either way.")(fn)
            fn = from_config(config, "backend",
                             help="onnx: onnxruntime on CPUs; torch: PyTorch with the model's own safetensors "
                                  "(a GPU, or a CPU); auto: torch on a GPU, onnx on a CPU.")(fn)
        return from_config(config, field, "--device", "device", metavar="auto|cpu|cuda|cuda:N",
                           help=f"Where the {what} are encoded: auto takes a GPU when one is visible, else the "
                                "CPU; a GPU that is not there is an error.")(fn)

    return decorate


def model_option(config):
    """--model NAME_OR_DIR, from ``config``'s ``model`` field."""
    return from_config(config, "model", metavar="NAME_OR_DIR",
                       help="Hugging Face model id or local directory [default: bundled all-MiniLM-L6-v2].")


def prompt_options(what: str, config, fields: tuple[str, str] = ("prompt_name", "prompt")):
    """--prompt-name / --prompt / --no-prompt, as one ``prompt`` choice: ``what`` says whose prompt
    (the documents' for encode, the queries' for search); ``fields`` are ``config``'s fields for the
    prompt's name and text. The command gets ``prompt_name`` and ``prompt`` (None, a text, or "" for
    --no-prompt)."""

    def decorate(fn):
        fn = click.option("--no-prompt", "no_prompt", is_flag=True,
                          help=f"Put no prompt before the {what}.")(fn)
        fn = from_config(config, fields[1], "--prompt", "prompt", metavar="TEXT",
                         help=f"Put this text before each of the {what}.")(fn)
        fn = from_config(config, fields[0], "--prompt-name", "prompt_name", metavar="NAME",
                         help=f"Put the model's prompt NAME (config_sentence_transformers.json) before each of "
                              f"the {what}.")(fn)

        @functools.wraps(fn)
        def wrapper(*args, prompt_name=None, prompt=None, no_prompt=False, **kwargs):
            if sum((prompt_name is not None, prompt is not None, no_prompt)) > 1:
                raise click.UsageError("give one of --prompt-name, --prompt and --no-prompt")
            return fn(*args, prompt_name=prompt_name, prompt="" if no_prompt else prompt, **kwargs)

        return wrapper

    return decorate
