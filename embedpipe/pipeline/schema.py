"""A pipeline spec (YAML) -> checked config dataclasses, with errors that name the key and the line.

    >>> spec = load_spec("pipelines/demo.yaml", overrides=["encode.pooling=cls"])
    >>> spec.encode.spec.pooling, spec.index.out
    ('cls', PosixPath('/.../demo_out/sample.index'))

Each section maps one-to-one onto a library config dataclass, read by introspection (its fields,
their type hints and defaults), so a new field in the library is a new key in the spec:

    encode    embedpipe.encode.EncodeJob, with EncoderSpec's fields (model, pooling, normalize,
              max_length, optimize, quantize) flat in the same section; Ray settings come from `ray`
    index     embedpipe.index.IndexConfig, plus `vectors` (default: encode's out), `out`, `append`
    evaluate  embedpipe.retrieval.EvaluateJob (`index` defaults to index's out)
    classify  embedpipe.classify.ClassifyJob
    ray       address, workers, cpus_per_actor (RaySection below)
    output_dir

Paths: inputs given in the file resolve against the file's directory (from the command line:
against the working directory); URLs (``s3://...``) pass through. Outputs go under output_dir;
one that would land outside it must be written as an absolute path. Where each value came from
(source.py) is kept, so every error points at the line or the ``--set`` to change.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import checks
from ..errors import EmbedpipeError
from ..fsio import is_url
from .source import Entry, Tree, Value, apply_override, read_tree

# The sections that are stages, in the order they run (stages.py has one class for each).
STAGE_NAMES = ("encode", "index", "evaluate", "classify")


@dataclass(frozen=True)
class RaySection:
    """The spec's ``ray`` section: where and how wide encode runs (encode.EncodeJob's ray_address,
    workers, threads)."""

    address: str | None = None          # Ray cluster to join; None = $RAY_ADDRESS if set, else an embedded local Ray
    workers: int | None = None          # encoder actors; None = one per cpus_per_actor CPUs of the cluster
    cpus_per_actor: int | None = None   # CPUs (= onnxruntime threads) per encoder actor; None = 1-4

    def __post_init__(self):
        checks.text("address", self.address, optional=True)
        checks.at_least("workers", self.workers, 1, optional=True)
        checks.at_least("cpus_per_actor", self.cpus_per_actor, 1, optional=True)


@dataclass(frozen=True)
class IndexSection:
    vectors: Path | str          # the vector directory to index (default: encode's out); a URL as a str
    out: Path                    # the index directory
    append: bool                 # when the vectors grew (new shards), add them instead of rebuilding
    config: Any                  # embedpipe.index.IndexConfig


@dataclass(frozen=True)
class Spec:
    path: Path                   # the spec file
    output_dir: Path
    ray: RaySection
    encode: Any = None           # embedpipe.encode.EncodeJob, or None when the section is absent
    index: IndexSection | None = None
    evaluate: Any = None         # embedpipe.retrieval.EvaluateJob
    classify: Any = None         # embedpipe.classify.ClassifyJob
    # "encode.out" -> "spec.yaml:12" or "--set encode.out": where each key was given (its section's
    # line for a default), so a refusal found later still points at what to change
    origins: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def stages(self) -> list[str]:
        return [name for name in STAGE_NAMES if getattr(self, name) is not None]

    def origin(self, key: str) -> str:
        """Where ``section.key`` came from (the spec file when it is not recorded)."""
        return self.origins.get(key, str(self.path))


# --- sections: which dataclass, which keys are paths ------------------------------------------------

@dataclass(frozen=True)
class Section:
    name: str
    target: Callable[[], type]          # the dataclass (imported lazily)
    exclude: tuple[str, ...] = ()       # fields the pipeline sets itself
    nested: Callable[[], type] | None = None  # a dataclass whose fields are flat in this section (EncoderSpec)
    extra: dict = field(default_factory=dict)  # stage keys that are not dataclass fields: name -> (type, default)
    inputs: tuple[str, ...] = ()        # path keys read: resolve against the spec's directory
    outputs: tuple[str, ...] = ()       # path keys written: under output_dir
    url_outputs: tuple[str, ...] = ()   # outputs that may be a URL, as on the command line (encode --out)
    maybe_paths: tuple[str, ...] = ()   # a local directory if one exists there, else a name (model: a hub id)
    required: tuple[str, ...] = ()      # required although the dataclass has a default
    defaults: dict = field(default_factory=dict)  # spec defaults that differ from the dataclass's


def _encode_job():
    from ..encode.job import EncodeJob
    return EncodeJob


def _encoder_spec():
    from ..encode.encoder import EncoderSpec
    return EncoderSpec


def _index_config():
    from ..index.build import IndexConfig
    return IndexConfig


def _evaluate_job():
    from ..retrieval.evaluate import EvaluateJob
    return EvaluateJob


def _classify_job():
    from ..classify.job import ClassifyJob
    return ClassifyJob


SECTIONS = {
    "encode": Section("encode", _encode_job, exclude=("spec", "ray_address", "workers", "threads", "ray_dashboard"),
                      nested=_encoder_spec, inputs=("corpus",), outputs=("out",), url_outputs=("out",),
                      maybe_paths=("model",), defaults={"out": "vectors"}),
    "index": Section("index", _index_config, extra={"vectors": (str | None, None), "out": (str, "index"),
                                                     "append": (bool, True)},
                     inputs=("vectors", "tuning_vectors"), outputs=("out",)),
    "evaluate": Section("evaluate", _evaluate_job, inputs=("index", "queries", "qrels"), outputs=("out",),
                        defaults={"index": None}),
    "classify": Section("classify", _classify_job, inputs=("train", "test"), outputs=("out", "save_model"),
                        maybe_paths=("model",),
                        required=("train",), defaults={"out": "classify"}),
    "ray": Section("ray", lambda: RaySection),
}
TOP_LEVEL = ("output_dir", *SECTIONS)


# --- type checks by introspection ---------------------------------------------------------------------

def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    names = {str: "a string", int: "an integer", float: "a number", bool: "true/false"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


_NO = object()


def _coerce(value, tp):
    """value as type tp, or _NO. YAML already gives ints, floats, bools, lists; no string parsing here."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            result = _coerce(value, arg)
            if result is not _NO:
                return result
        return _NO
    if tp is type(None):
        return None if value is None else _NO
    if tp is typing.Any:
        return value
    if origin in (list, tuple):
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = [value]  # one item for a list: `poolings: cls`
        if not isinstance(value, list):
            return _NO
        item = typing.get_args(tp)[0]
        items = [_coerce(v, item) for v in value]
        return _NO if any(i is _NO for i in items) else origin(items)
    if tp is bool:
        return value if isinstance(value, bool) else _NO
    if tp is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _NO
    if tp is float:
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else _NO
    if tp is str:
        return value if isinstance(value, str) else _NO
    return value if isinstance(value, tp) else _NO


def _schema(section: Section) -> dict[str, tuple[Any, Any, str]]:
    """{key: (type, default, where it goes)}: the dataclass's fields, then nested ones, then extras."""
    keys = {}
    targets = [(section.target(), "job")] + ([(section.nested(), "nested")] if section.nested else [])
    for cls, place in targets:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name in section.exclude or not f.init:
                continue
            if f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                default = _NO  # required
            keys[f.name] = (hints[f.name], section.defaults.get(f.name, default), place)
    for name, (tp, default) in section.extra.items():
        keys[name] = (tp, section.defaults.get(name, default), "extra")
    return keys


def _schema_default(section: Section, key: str):
    default = _schema(section)[key][1]
    return None if default is _NO else default


def _check_section(section: Section, entry: Entry) -> dict[str, tuple[Any, Value | None, str]]:
    """{key: (value, the Value it came from or None for a default, place)} with every type checked."""
    given = entry.keys
    if given is None:
        if entry.value.value is not None:
            raise EmbedpipeError(f"{entry.value.where}: {section.name} must be a mapping of keys "
                                 f"(or empty for all defaults)")
        given = {}
    schema = _schema(section)
    for key, value in given.items():
        if key not in schema:
            raise EmbedpipeError(f"{value.where}: unknown key {section.name}.{key}; "
                                 f"{section.name} takes: {', '.join(schema)}")
    checked = {}
    for key, (tp, default, place) in schema.items():
        if key in given:
            value = _coerce(given[key].value, tp)
            if value is _NO:
                raise EmbedpipeError(f"{given[key].where}: {section.name}.{key} must be {_type_name(tp)}, "
                                     f"got {given[key].value!r}")
            checked[key] = (value, given[key], place)
        elif default is _NO or key in section.required:
            raise EmbedpipeError(f"{entry.value.where}: {section.name}.{key} is required")
        else:
            checked[key] = (default, None, place)
    for key in section.required:
        if key in given and checked[key][0] in ("", None):
            raise EmbedpipeError(f"{given[key].where}: {section.name}.{key} is required")
    return checked


# --- paths ----------------------------------------------------------------------------------------------

def _input_path(value: str, base: Path) -> str:
    if is_url(value):
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def _maybe_path(value: str, base: Path) -> str:
    """A model: a directory relative to ``base`` when one is there, else passed on (a hub id)."""
    path = Path(value).expanduser()
    if path.is_absolute() or is_url(value):
        return value
    return str((base / path).resolve()) if (base / path).exists() else value


def _output_path(value: str, output_dir: Path, where: str, key: str) -> Path:
    if is_url(value):
        raise EmbedpipeError(f"{where}: {key} is a URL; outputs are local paths (a shared filesystem on a cluster)")
    path = Path(value).expanduser()
    if path.is_absolute():
        return path
    resolved = (output_dir / path).resolve()
    if not resolved.is_relative_to(output_dir):
        raise EmbedpipeError(f"{where}: {key} {value!r} would land outside output_dir {output_dir}; "
                             "write it as an absolute path if that is meant")
    return resolved


def _resolve_paths(name: str, checked: dict, output_dir: Path, spec_dir: Path, section_where: str) -> dict:
    """{key: (value with its paths resolved, place, where it was given)} for one section."""
    section, values = SECTIONS[name], {}
    for key, (value, origin, place) in checked.items():
        base = origin.base if origin else spec_dir
        where = origin.where if origin else section_where
        if value is not None and key in section.inputs:
            value = _input_path(value, base)
        elif value is not None and key in section.maybe_paths:
            value = _maybe_path(value, base)
        elif key in section.outputs and (value is not None or _schema_default(section, key) is not None):
            if not isinstance(value, str) or not value:
                raise EmbedpipeError(f"{where}: {name}.{key} must be a path (under output_dir unless absolute)")
            if not (is_url(value) and key in section.url_outputs):   # a URL stays as given, never a Path
                value = _output_path(value, output_dir, where, f"{name}.{key}")
        values[key] = (value, place, where)
    return values


# --- the whole spec ---------------------------------------------------------------------------------------

def load_spec(path: str | Path, *, output_dir: str | None = None, overrides: list[str] = (),
              cwd: Path | None = None) -> Spec:
    """Read, check and resolve a pipeline spec; raises EmbedpipeError naming the key and line."""
    path, cwd = Path(path), Path(cwd or Path.cwd())
    if not path.is_file():
        raise EmbedpipeError(f"pipeline spec {path} does not exist")
    tree = read_tree(path, TOP_LEVEL)
    for text in overrides:
        apply_override(tree, text, cwd, TOP_LEVEL)
    if output_dir is not None:
        tree["output_dir"] = Entry(Value(output_dir, "--output-dir", cwd), None)
    for key, entry in tree.items():
        if key not in TOP_LEVEL:
            raise EmbedpipeError(f"{entry.value.where}: unknown section {key!r}; a spec has: {', '.join(TOP_LEVEL)}")
    if not any(name in tree for name in STAGE_NAMES):
        raise EmbedpipeError(f"{path}: no stage to run; give at least one of: {', '.join(STAGE_NAMES)}")

    out_value = tree.get("output_dir", Entry(Value(f"{path.stem}.out", str(path), path.parent), None)).value
    if not isinstance(out_value.value, str) or not out_value.value or is_url(out_value.value):
        raise EmbedpipeError(f"{out_value.where}: output_dir must be a local directory path, got {out_value.value!r}")
    out_dir = Path(_input_path(out_value.value, out_value.base))

    resolved = {name: _resolve_paths(name, _check_section(SECTIONS[name], tree[name]), out_dir, path.parent,
                                     tree[name].value.where)
                for name in SECTIONS if name in tree}
    origins = {f"{name}.{key}": where for name, values in resolved.items() for key, (_, _, where) in values.items()}
    ray_values = resolved.get("ray", {})
    ray = _checked("ray", tree["ray"].value.where if "ray" in tree else str(path),
                   lambda: RaySection(**{k: v for k, (v, _, _) in ray_values.items()}), ray_values)
    return Spec(path=path.resolve(), output_dir=out_dir, ray=ray,
                encode=_build_encode_section(resolved.get("encode"), ray),
                index=_build_index_section(resolved.get("index"), resolved.get("encode"), tree, origins),
                evaluate=_build_evaluate_section(resolved.get("evaluate"), resolved.get("index"), tree, origins),
                classify=_build_plain_section("classify", resolved.get("classify")),
                origins=origins)


# Fields a section's job takes from another section of the spec.
BORROWED = {"encode": {"threads": "ray.cpus_per_actor", "workers": "ray.workers", "ray_address": "ray.address"}}


def spec_key(section: str, field: str, value: str | None = None) -> str:
    """How a spec names a config field (and the value to set): ``encode.rows_per_shard``,
    ``encode.empty_text: skip``."""
    key = BORROWED.get(section, {}).get(field, f"{section}.{field}")
    return f"{key}: {value}" if value else key


def render(error: EmbedpipeError, section: str) -> str:
    """An error of the library with the config fields it names written as this spec's keys."""
    return error.render(lambda field, value: spec_key(section, field, value))


def _checked(name: str, where: str, build: Callable, values: dict | None = None):
    """Build a section's dataclass (which checks itself); its error gets the offending key's
    location (the line, or the --set that gave it) and names the key as the spec does."""
    try:
        return build()
    except EmbedpipeError as e:
        field = getattr(e, "field", None)
        if values and field in values and values[field][2]:
            where = values[field][2]
        raise EmbedpipeError(f"{where}: {render(e, name)}") from None


def _build_encode_section(values: dict | None, ray: RaySection):
    if values is None:
        return None
    job_cls, spec_cls = SECTIONS["encode"].target(), SECTIONS["encode"].nested()
    job = {k: (str(v) if k == "out" else v) for k, (v, place, _) in values.items() if place == "job"}
    nested = {k: v for k, (v, place, _) in values.items() if place == "nested"}
    where = values["corpus"][2]
    spec = _checked("encode", where, lambda: spec_cls(**nested), values)
    return _checked("encode", where, lambda: job_cls(**job, spec=spec, ray_address=ray.address, workers=ray.workers,
                                                     threads=ray.cpus_per_actor), values)


def _build_index_section(values: dict | None, encode: dict | None, tree: Tree, origins: dict) -> IndexSection | None:
    if values is None:
        return None
    vectors = values["vectors"][0]
    if vectors is None:
        if encode is None:
            raise EmbedpipeError(f"{tree['index'].value.where}: index.vectors is required when there is no encode "
                                 "section")
        vectors = str(encode["out"][0])
        origins["index.vectors"] = origins["encode.out"]
    config_cls = SECTIONS["index"].target()
    config = {k: v for k, (v, place, _) in values.items() if place == "job"}
    config = _checked("index", tree["index"].value.where, lambda: config_cls(**config), values)
    return IndexSection(vectors=vectors if is_url(vectors) else Path(vectors), out=values["out"][0],
                        append=values["append"][0], config=config)


def _build_evaluate_section(values: dict | None, index: dict | None, tree: Tree, origins: dict):
    if values is None:
        return None
    fields = {k: v for k, (v, _, _) in values.items()}
    if fields.get("index") is None:
        if index is None:
            raise EmbedpipeError(f"{tree['evaluate'].value.where}: evaluate.index is required when there is no "
                                 "index section")
        fields["index"] = str(index["out"][0])
        origins["evaluate.index"] = origins["index.out"]
    fields = {k: (str(v) if isinstance(v, Path) else v) for k, v in fields.items()}
    job_cls = SECTIONS["evaluate"].target()
    return _checked("evaluate", tree["evaluate"].value.where, lambda: job_cls(**fields), values)


def _build_plain_section(name: str, values: dict | None):
    if values is None:
        return None
    cls = SECTIONS[name].target()
    fields = {k: (str(v) if isinstance(v, Path) else v) for k, (v, _, _) in values.items()}
    return _checked(name, next(iter(values.values()))[2], lambda: cls(**fields), values)
