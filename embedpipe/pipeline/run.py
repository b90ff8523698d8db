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

from ..errors import EmbedpipeError
from .spec import Spec
from .stages import RUN, STATUS, UPSTREAM, Status

log = logging.getLogger("embedpipe.pipeline")


@dataclass(frozen=True)
class Step:
    stage: str
    status: Status


@dataclass(frozen=True)
class StepResult:
    stage: str
    action: str        # "skipped", "ran", "appended"
    detail: str        # what was done (or why it was skipped)
    seconds: float


def make_plan(spec: Spec) -> list[Step]:
    """What a run would do now, stage by stage (reads manifests only; runs nothing)."""
    steps, running = [], set()
    for stage in spec.stages():
        upstream = any(name in running for name in UPSTREAM[stage])
        status = STATUS[stage](spec, upstream)
        if status.runs:
            running.add(stage)
        steps.append(Step(stage, status))
    return steps


def run_pipeline(spec: Spec, on_step=None) -> list[StepResult]:
    """Run the stages in order; each one decides whether it is up to date just before it would run.

    ``on_step(result)`` is called after each stage (the CLI prints it)."""
    spec.output_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for stage in spec.stages():
        started = time.monotonic()
        status = STATUS[stage](spec, False)
        if not status.runs:
            result = StepResult(stage, "skipped", status.why, 0.0)
        else:
            log.info("%s: running (%s)", stage, status.why)
            try:
                detail = RUN[stage](spec, status)
            except EmbedpipeError as e:
                raise EmbedpipeError(f"stage {stage} failed: {e} (finished stages are kept; rerun to continue)") from None
            action = "appended" if status.action == "append" else "ran"
            result = StepResult(stage, action, detail, round(time.monotonic() - started, 3))
        results.append(result)
        if on_step is not None:
            on_step(result)
    return results
