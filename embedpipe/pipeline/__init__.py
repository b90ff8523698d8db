"""Pipelines as job specs: a YAML file whose sections are the library's configs, run stage by stage.

    spec.py     YAML -> checked config dataclasses (errors name the key and the line)
    stages.py   per stage: is the output complete for these inputs and config; run it
    run.py      the plan (--dry-run) and the run
    submit.py   the same spec as a Ray job on a cluster (Ray's job submission SDK)
"""

from .run import StepResult, make_plan, run_pipeline
from .spec import Spec, load_spec

__all__ = ["Spec", "StepResult", "load_spec", "make_plan", "run_pipeline"]
