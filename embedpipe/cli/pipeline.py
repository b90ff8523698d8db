"""`embedpipe run SPEC` and `embedpipe submit SPEC --address URL`: a pipeline spec, here or on a Ray cluster.

    $ embedpipe run pipelines/demo.yaml --dry-run
    $ embedpipe run pipelines/demo.yaml --set encode.pooling=cls --output-dir /tmp/demo
    $ embedpipe submit pipelines/nightly.yaml --address http://head:8265 --wait
"""

from __future__ import annotations

import json

import click

from ..errors import EmbedpipeError
from .options import user_errors

set_option = click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
                          help="Override one key of the spec (the value is read as YAML: 3, true, null, [10, 100]); "
                               "repeatable. Relative paths given here are relative to the working directory.")
output_dir_option = click.option("--output-dir", default=None, type=click.Path(file_okay=False),
                                 help="Write under this directory instead of the spec's output_dir.")


@click.command("run")
@click.argument("spec", type=click.Path())
@output_dir_option
@set_option
@click.option("--dry-run", is_flag=True, help="Check the spec and print the plan; run nothing.")
@user_errors
def run_cmd(spec, output_dir, overrides, dry_run):
    """Run the stages of the pipeline SPEC (YAML) in order: encode, index, evaluate, classify.

    A stage whose output is already complete for the same inputs and config is skipped, so a rerun
    after a failure continues where it stopped, and a rerun after the corpus grew encodes only the
    new rows and appends them to the index. Sections are the library's configs (see
    docs/pipelines.md); relative paths in the spec are relative to the spec's directory.
    """
    from ..pipeline import load_spec, make_plan, run_pipeline

    loaded = load_spec(spec, output_dir=output_dir, overrides=list(overrides))
    click.echo(f"spec        {loaded.path}")
    click.echo(f"output_dir  {loaded.output_dir}")
    if dry_run:
        for number, step in enumerate(make_plan(loaded), 1):
            action = {"skip": "up to date", "run": "run", "append": "append"}[step.status.action]
            click.echo(f"{number}. {step.stage:<9} {action:<11} {step.status.why}")
            for path in step.missing:
                click.echo(f"   missing here: {path}")
        return
    summary = {}

    def show(result):
        click.echo(f"{result.stage:<9} {result.action:<9} {result.detail}")
        summary[result.stage] = result.action

    run_pipeline(loaded, on_step=show)
    click.echo(json.dumps({"output_dir": str(loaded.output_dir), "stages": summary}))


def _env(values) -> dict[str, str]:
    env = {}
    for text in values:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {text!r}", param_hint="--env")
        env[key] = value
    return env


@click.command("submit")
@click.argument("spec", type=click.Path())
@click.option("--address", required=True, envvar="RAY_JOB_ADDRESS", metavar="URL",
              help="The cluster's job server (its dashboard), e.g. http://head:8265 [env: RAY_JOB_ADDRESS].")
@click.option("--working-dir", default=".", show_default=True, type=click.Path(file_okay=False, exists=True),
              help="The project directory uploaded with the job; SPEC must be inside it.")
@output_dir_option
@set_option
@click.option("--env", "env", multiple=True, metavar="KEY=VALUE",
              help="An environment variable for the job; repeatable.")
@click.option("--submission-id", default=None, help="Name the job (Ray refuses a second job of the same name).")
@click.option("--wait", is_flag=True, help="Follow the job's logs until it ends; exit 0 only if it succeeded.")
@user_errors
def submit_cmd(spec, address, working_dir, output_dir, overrides, env, submission_id, wait):
    """Run the pipeline SPEC as a Ray job on the cluster at --address.

    Uploads --working-dir as the job's runtime_env and runs `python -m embedpipe run SPEC` there, so
    the encode stage's actors run on the cluster. Prints the job id; with --wait, streams the logs
    and exits with the job's final status (SUCCEEDED: 0, FAILED or STOPPED: 1).
    """
    from ..pipeline import load_spec
    from ..pipeline.submit import SubmitJob, submit_pipeline

    load_spec(spec, output_dir=output_dir, overrides=list(overrides))  # fail here, not on the cluster
    job = SubmitJob(spec=spec, address=address, working_dir=working_dir, output_dir=output_dir,
                    overrides=list(overrides), env=_env(env), submission_id=submission_id, wait=wait)
    submission_id, status = submit_pipeline(job, echo=click.echo)
    if status is not None:
        click.echo(f"job {submission_id} {status}")
        if status != "SUCCEEDED":
            raise EmbedpipeError(f"job {submission_id} ended {status}")
