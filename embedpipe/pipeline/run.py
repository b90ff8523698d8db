"""Plan and run a pipeline spec: stages in order, each skipped when its output is already complete.

    >>> plan = make_plan(load_spec("pipelines/demo.yaml"))  # doctest: +SKIP
    >>> [(step.stage, step.status.action) for step in plan]  # doctest: +SKIP
    [('encode', 'skip'), ('index', 'skip'), ('evaluate', 'run'), ('classify', 'run')]
    >>> results = run_pipeline(load_spec("pipelines/demo.yaml"))  # doctest: +SKIP

Every stage publishes its output atomically, so after a failure the finished stages are complete
and a rerun continues with the first stage that is not.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import BadInput, EmbedpipeError
from ..fsio import FileLock, check_output, is_url
from .schema import Spec, render
from .stages import STAGES, Stage, Status

log = logging.getLogger("embedpipe.pipeline")


@dataclass(frozen=True)
class Step:
    stage: str
    status: Status
    missing: tuple[str, ...] = ()   # local input paths that do not exist (yet) and no earlier stage writes


def check_outputs(spec: Spec) -> None:
    """Refuse, before anything is written, a spec whose stage output is, holds or lies inside a path
    the spec reads, or another stage output: replacing that output would destroy it. An output that a
    later stage reads as it is (encode.out as index.vectors) is the pipeline chaining, not a clash.

        --set encode.out=corpus.parquet  ->  "--set encode.out: encode.out /w/corpus.parquet is the encode.corpus ..."
    """
    stages = _stages(spec)
    outputs = [(f"{stage.name}.{key}", path, order) for order, stage in enumerate(stages)
               for key, path in stage.outputs(spec).items() if path is not None]
    inputs = [(f"{stage.name}.{key}", path, order) for order, stage in enumerate(stages)
              for key, path in stage.inputs(spec).items() if path is not None]
    for name, out, order in outputs:
        _refuse_overlap(spec, name, out, {key: path for key, path, reader in inputs
                                          if not (reader > order and _same(path, out))})
    # Two outputs, one in the other: name the outer one (replacing it deletes the other), which is
    # the one checked first when the shorter paths go first.
    for name, out, _ in sorted(outputs, key=lambda output: len(output[1])):
        _refuse_overlap(spec, name, out, {key: path for key, path, _ in outputs if key != name})


def _refuse_overlap(spec: Spec, name: str, out: str, others: dict[str, str]) -> None:
    if is_url(out):   # encode.out on an object store: only another URL can be it, hold it or lie in it
        for key, path in others.items():
            a, b = f"{str(out).rstrip('/')}/", f"{str(path).rstrip('/')}/"
            if is_url(path) and (a.startswith(b) or b.startswith(a)):
                raise BadInput(f"{spec.origin(name)}: {name} {out} overlaps the {key} {path}")
        return
    try:
        check_output(out, others)
    except BadInput as e:
        raise BadInput(f"{spec.origin(name)}: {name} {str(e).removeprefix('output ')}") from None


def _same(a: str, b: str) -> bool:
    if is_url(a) or is_url(b):
        return a.rstrip("/") == b.rstrip("/")
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def _stages(spec: Spec) -> list[Stage]:
    return [STAGES[name] for name in spec.stages()]


@dataclass(frozen=True)
class StepResult:
    stage: str
    action: str        # "skipped", "ran", "appended"
    detail: str        # what was done (or why it was skipped)
    seconds: float


def make_plan(spec: Spec) -> list[Step]:
    """What a run would do now, stage by stage (reads manifests only; runs nothing). A spec whose
    outputs would destroy its inputs is refused here as in a run."""
    check_outputs(spec)
    steps, running, written = [], set(), set()
    for stage in _stages(spec):
        status = stage.status(spec, any(name in running for name in stage.upstream))
        if status.runs:
            running.add(stage.name)
        missing = tuple(f"{stage.name}.{key} {path}" for key, path in stage.inputs(spec).items()
                        if path and not is_url(path) and path not in written and not Path(path).exists())
        written |= {path for path in stage.outputs(spec).values() if path}
        steps.append(Step(stage.name, status, missing))
    return steps


def run_pipeline(spec: Spec, on_step=None) -> list[StepResult]:
    """Run the stages in order; each one decides whether it is up to date just before it would run.

    ``on_step(result)`` is called after each stage (the CLI prints it)."""
    check_outputs(spec)  # before output_dir or its lock exist: a refused spec leaves nothing behind
    spec.output_dir.mkdir(parents=True, exist_ok=True)
    with lock_output_dir(spec.output_dir):
        return _run_stages(spec, on_step)


LOCK = ".embedpipe-run.lock"


def lock_output_dir(output_dir: Path) -> FileLock:
    """One run at a time per output_dir: a second one is refused at once, not queued (an flock,
    released by the OS even if the process is killed)."""
    return FileLock(output_dir / LOCK, f"another embedpipe run is working in {output_dir} (it holds {LOCK}); "
                                       "wait for it to finish")


def _run_stages(spec: Spec, on_step) -> list[StepResult]:
    results = []
    for stage in _stages(spec):
        started = time.monotonic()
        status = stage.status(spec, False)  # the stages before it have finished: their outputs are current
        if not status.runs:
            result = StepResult(stage.name, "skipped", status.why, 0.0)
        else:
            log.info("%s: running (%s)", stage.name, status.why)
            try:
                detail = stage.run(spec, status)
            except EmbedpipeError as e:
                raise EmbedpipeError(f"stage {stage.name} failed: {render(e, stage.name)} (finished stages are "
                                     "kept; rerun to continue)") from None
            action = "appended" if status.action == "append" else "ran"
            result = StepResult(stage.name, action, detail, round(time.monotonic() - started, 3))
        results.append(result)
        if on_step is not None:
            on_step(result)
    return results
