"""Plan and run a pipeline spec: stages in order, each skipped when its output is already complete.

    >>> plan = make_plan(load_spec("pipelines/demo.yaml"))
    >>> [(step.stage, step.status.action) for step in plan]
    [('encode', 'skip'), ('index', 'skip'), ('evaluate', 'run'), ('classify', 'run')]
    >>> results = run_pipeline(load_spec("pipelines/demo.yaml"))

Every stage publishes its output atomically, so after a failure the finished stages are complete
and a rerun continues with the first stage that is not.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import EmbedpipeError
from ..fsio import FileLock, is_url
from .schema import Spec
from .stages import STAGES, Stage, Status

log = logging.getLogger("embedpipe.pipeline")


@dataclass(frozen=True)
class Step:
    stage: str
    status: Status
    missing: tuple[str, ...] = ()   # local input paths that do not exist (yet) and no earlier stage writes


def _stages(spec: Spec) -> list[Stage]:
    return [STAGES[name] for name in spec.stages()]


@dataclass(frozen=True)
class StepResult:
    stage: str
    action: str        # "skipped", "ran", "appended"
    detail: str        # what was done (or why it was skipped)
    seconds: float


def make_plan(spec: Spec) -> list[Step]:
    """What a run would do now, stage by stage (reads manifests only; runs nothing)."""
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
    spec.output_dir.mkdir(parents=True, exist_ok=True)
    with run_lock(spec.output_dir):
        return _run_stages(spec, on_step)


LOCK = ".embedpipe-run.lock"


def run_lock(output_dir: Path) -> FileLock:
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
                raise EmbedpipeError(f"stage {stage.name} failed: {e} (finished stages are kept; rerun to continue)"
                                     ) from None
            action = "appended" if status.action == "append" else "ran"
            result = StepResult(stage.name, action, detail, round(time.monotonic() - started, 3))
        results.append(result)
        if on_step is not None:
            on_step(result)
    return results
