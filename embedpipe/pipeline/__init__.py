"""Pipelines as job specs: a YAML file whose sections are the library's configs, run stage by stage.

    source.py   where each value came from: the YAML file (line numbers) and --set overrides
    schema.py   those values -> checked config dataclasses, one per section (errors name the key and the line)
    stages.py   one class per stage: its inputs and outputs, is its output complete, run it
    run.py      the plan (--dry-run) and the run, one at a time per output_dir
    submit.py   the same spec as a Ray job on a cluster (Ray's job submission SDK)

Imports point one way: stages.py reads schema's Spec; schema.py knows the stages only by name
(STAGE_NAMES).

    >>> results = run_pipeline(load_spec("pipelines/demo.yaml", overrides=["classify.seeds=1"]))  # doctest: +SKIP
"""

from .run import StepResult, make_plan, run_pipeline
from .schema import Spec, load_spec

__all__ = ["Spec", "StepResult", "load_spec", "make_plan", "run_pipeline"]
