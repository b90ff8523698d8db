"""Submit a pipeline spec to a Ray cluster as a Ray job (Ray's job submission SDK).

    >>> job = SubmitJob("pipelines/nightly.yaml", address="http://head:8265", wait=True)  # doctest: +SKIP
    >>> submission_id, status = submit_pipeline(job, print)  # doctest: +SKIP
    submitted raysubmit_...: python -m embedpipe run pipelines/nightly.yaml
    ...
    >>> status  # doctest: +SKIP
    'SUCCEEDED'

The project directory (``working_dir``) is uploaded as the job's runtime_env, and the job runs
``python -m embedpipe run SPEC ...`` inside it, on the cluster, where RAY_ADDRESS points the encode
stage at the cluster itself. The same as ``ray job submit --working-dir . -- python -m embedpipe run SPEC``.
"""

from __future__ import annotations

import asyncio
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import checks
from ..errors import ConfigError, EmbedpipeError, first_line

# Not uploaded with the project: environments, caches and results (Ray also honours .gitignore).
EXCLUDES = [".git", ".venv", ".cache", ".pytest_cache", "**/__pycache__", "demo_out", "bench_out",
            "*.vectors", "*.index"]
FINAL = {"SUCCEEDED": 0, "FAILED": 1, "STOPPED": 1}


@dataclass
class SubmitJob:
    spec: str                                 # the pipeline spec, a file inside working_dir
    address: str                              # the cluster's dashboard / job server, e.g. http://head:8265
    working_dir: str = "."                    # uploaded as the job's working directory
    output_dir: str | None = None             # `run --output-dir` in the job (a path the cluster sees)
    overrides: list[str] = field(default_factory=list)  # `run --set section.key=value` in the job
    env: dict[str, str] = field(default_factory=dict)   # extra environment variables for the job
    submission_id: str | None = None          # None = Ray picks raysubmit_...
    wait: bool = False                        # follow the logs until the job ends

    def __post_init__(self):
        checks.path("spec", self.spec)
        checks.text("address", self.address)
        checks.path("working_dir", self.working_dir)
        checks.path("output_dir", self.output_dir, optional=True)
        if not isinstance(self.overrides, list) or not all(isinstance(o, str) for o in self.overrides):
            raise ConfigError("overrides", f"must be a list of section.key=value strings, got {self.overrides!r}")
        if not isinstance(self.env, dict) or not all(isinstance(k, str) and k and isinstance(v, str)
                                                     for k, v in self.env.items()):
            raise ConfigError("env", f"must map variable names to strings, got {self.env!r}")
        checks.text("submission_id", self.submission_id, optional=True)
        checks.boolean("wait", self.wait)


def entrypoint(job: SubmitJob) -> str:
    """The command the job runs, with the spec relative to working_dir."""
    spec, root = Path(job.spec).resolve(), Path(job.working_dir).resolve()
    if not spec.is_file():
        raise EmbedpipeError(f"pipeline spec {job.spec} does not exist")
    if not spec.is_relative_to(root):
        raise EmbedpipeError(f"pipeline spec {job.spec} is not inside the working directory {root}, "
                             "which is what the job receives; set working_dir", fields=("working_dir",))
    words = ["python", "-m", "embedpipe", "run", str(spec.relative_to(root))]
    if job.output_dir:
        words += ["--output-dir", job.output_dir]
    for override in job.overrides:
        words += ["--set", override]
    return shlex.join(words)


def runtime_env(job: SubmitJob) -> dict:
    root = Path(job.working_dir).resolve()
    if not (root / "embedpipe").is_dir():
        raise EmbedpipeError(f"{root} is not the embedpipe project (no embedpipe/ package in it); set working_dir",
                             fields=("working_dir",))
    return {"working_dir": str(root), "excludes": EXCLUDES,
            "env_vars": {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **job.env}}


def _client(address: str):
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except Exception as e:  # Ray raises ConnectionError, ValueError, RuntimeError ... for a bad address
        raise EmbedpipeError(f"cannot reach the Ray job server at {address}: {first_line(e)}") from None


def submit_pipeline(job: SubmitJob, echo: Callable[[str], None] = print) -> tuple[str, str | None]:
    """Submit; ``echo`` the job id; with ``wait``, stream the job's logs to ``echo`` and return its
    final status (None without ``wait``)."""
    command, env = entrypoint(job), runtime_env(job)
    client = _client(job.address)
    try:
        submission_id = client.submit_job(entrypoint=command, runtime_env=env,
                                          submission_id=job.submission_id,
                                          metadata={"embedpipe_spec": Path(job.spec).name})
    except RuntimeError as e:
        raise EmbedpipeError(f"the Ray job server refused the job: {first_line(e)}") from None
    echo(f"submitted {submission_id}: {command}")
    if not job.wait:
        return submission_id, None
    return submission_id, follow(client, submission_id, echo)


def follow(client, submission_id: str, echo: Callable[[str], None]) -> str:
    """Print the job's logs as they come; return its final status once it has one."""
    async def tail():
        async for chunk in client.tail_job_logs(submission_id):
            echo(chunk.rstrip("\n"))

    try:
        asyncio.run(tail())
    except Exception as e:  # the log stream can drop (head restarts); the status still tells the end
        echo(f"(log stream ended: {first_line(e)})")
    while True:
        status = str(client.get_job_status(submission_id).value)
        if status in FINAL:
            return status
        time.sleep(1)
