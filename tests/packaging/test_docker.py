"""docker/ and the cron wrapper, checked as far as a machine without a Docker engine or Kubernetes
can: what the Dockerfile copies exists, the manifests parse and carry KubeRay's required fields,
their entrypoint passes `embedpipe run --dry-run`, and the wrapper's lock keeps runs apart."""

from __future__ import annotations

import fcntl
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import ray
import yaml
from click.testing import CliRunner

from embedpipe.cli import main

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"


def dockerfile() -> list[str]:
    """Instructions with continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (DOCKER / "Dockerfile").read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def manifest(name: str) -> dict:
    return yaml.safe_load((DOCKER / name).read_text())


def test_dockerfile_builds_on_the_ray_image_for_python_311_and_copies_files_that_exist():
    lines = dockerfile()
    ray_version = next(line.split("=", 1)[1] for line in lines if line.startswith("ARG RAY_VERSION="))
    assert ray_version == ray.__version__                                  # the ray embedpipe is tested with
    assert "FROM rayproject/ray:${RAY_VERSION}-py311-cpu" in lines
    copies = [shlex.split(line)[1:] for line in lines if line.startswith("COPY")]
    assert copies
    for words in copies:
        sources = [w for w in words[:-1] if not w.startswith("--")]
        for source in sources:
            assert (ROOT / source).exists(), f"the Dockerfile copies {source}, which is not in the repository"
    copied = {s for words in copies for s in words[:-1]}
    assert {"pyproject.toml", "embedpipe", "pipelines"} <= copied
    assert any(line.startswith("RUN pip install .") for line in lines)
    assert any("embedpipe export" in line for line in lines)             # the bundled model, exported at build
    assert 'ENTRYPOINT ["embedpipe"]' in lines                            # docker run IMAGE encode ...


def test_the_dockerfile_dry_run_passes_here(tmp_path, monkeypatch):
    run = next(line for line in dockerfile() if "embedpipe run" in line)
    command = shlex.split(run.split("&&", 1)[1])
    assert command[:2] == ["embedpipe", "run"] and "--dry-run" in command
    command[command.index("--output-dir") + 1] = str(tmp_path / "demo_out")
    monkeypatch.chdir(ROOT)                                              # the image's WORKDIR holds pipelines/
    result = CliRunner().invoke(main, command[1:])
    assert result.exit_code == 0, result.output


def test_rayjob_has_what_kuberay_requires_and_its_entrypoint_dry_runs(tmp_path, monkeypatch):
    job = manifest("rayjob.yaml")
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    spec = job["spec"]
    cluster = spec["rayClusterSpec"]
    assert cluster["rayVersion"] == ray.__version__
    head = cluster["headGroupSpec"]["template"]["spec"]
    workers = cluster["workerGroupSpecs"]
    assert isinstance(cluster["headGroupSpec"]["rayStartParams"], dict)
    assert workers and all(w["groupName"] and isinstance(w["rayStartParams"], dict) for w in workers)
    pods = [head] + [w["template"]["spec"] for w in workers]
    images = {c["image"] for pod in pods for c in pod["containers"]}
    assert len(images) == 1                                              # one image for every node
    assert spec["shutdownAfterJobFinishes"] is True

    words = shlex.split(spec["entrypoint"])
    assert words[:2] == ["embedpipe", "run"]
    spec_file = ROOT / words[2]
    assert spec_file.is_file()
    # every absolute path of the spec is on a volume every pod mounts
    mounts = [{m["mountPath"] for c in pod["containers"] for m in c.get("volumeMounts", [])} for pod in pods]
    paths = [v for v in _values(yaml.safe_load(spec_file.read_text())) if isinstance(v, str) and v.startswith("/")]
    assert paths
    for path in paths:
        assert all(any(path.startswith(m.rstrip("/") + "/") for m in pod_mounts) for pod_mounts in mounts), path
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(main, [*words[1:], "--dry-run", "--output-dir", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "1. encode" in result.output and "2. index" in result.output


def _values(tree):
    if isinstance(tree, dict):
        for value in tree.values():
            yield from _values(value)
    else:
        yield tree


def test_raycronjob_schedules_the_same_rayjob_and_says_it_is_alpha():
    cron = manifest("raycronjob.yaml")
    assert (cron["apiVersion"], cron["kind"]) == ("ray.io/v1", "RayCronJob")
    assert len(cron["spec"]["schedule"].split()) == 5
    assert cron["spec"]["jobTemplate"] == manifest("rayjob.yaml")["spec"]
    text = (DOCKER / "raycronjob.yaml").read_text()
    assert "ALPHA" in text and "feature gate" in text and "RayCronJob=true" in text


def test_the_cron_wrapper_never_runs_twice_at_once(tmp_path):
    script = ROOT / "scripts" / "nightly_submit.sh"
    lock = tmp_path / "nightly.lock"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "EMBEDPIPE_LOCK": str(lock), "RAY_JOB_ADDRESS": "http://127.0.0.1:9", "RAY_AUTH_MODE": "disabled"}
    with open(lock, "a") as held:                    # another run holds the lock
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        busy = subprocess.run([str(script)], capture_output=True, text=True, env=env, timeout=60)
    assert busy.returncode == 75
    assert "another nightly run holds" in busy.stdout and "submitting" not in busy.stdout
    # lock free: it submits (here to a closed port, so `ray job submit` itself fails and says so)
    free = subprocess.run([str(script)], capture_output=True, text=True, env=env, timeout=120)
    assert "submitting pipelines/nightly.yaml as embedpipe-nightly-" in free.stdout
    assert free.returncode not in (0, 75)
    assert f"finished with status {free.returncode}" in free.stdout
