"""Real pieces for tests and benchmarks: small models (nothing is downloaded) and a Ray head.

    >>> save_tiny_bert(Path("tiny-bert"), words=["cat", "dog"])   # a hub-style model directory  # doctest: +SKIP
    >>> save_tiny_distilbert(Path("tiny-distilbert"), words=["cat", "dog"])                  # doctest: +SKIP
    >>> with ray_head(log_dir) as head:                           # `ray start --head` on 127.0.0.1  # doctest: +SKIP
    ...     head.gcs_address                                      # "127.0.0.1:PORT", for --ray-address

The Ray head runs in its own process group on free loopback ports of its own and is stopped by
that group's id (never `ray stop`, which would stop every Ray on the machine).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789"


def save_tiny_bert(path: Path, words: Sequence[str], characters: str = LETTERS, seed: int = 0) -> Path:
    """A 2-layer, 32-wide BERT with random weights and a WordPiece vocab of ``words`` plus single
    ``characters`` (and their ``##`` continuations), saved like a hub model; 64 tokens at most."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *characters, *(f"##{c}" for c in characters)]
    (path / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True)
    tokenizer.model_max_length = 64
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=37, max_position_embeddings=64)
    BertModel(config).eval().save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def save_tiny_distilbert(path: Path, words: Sequence[str], characters: str = LETTERS, seed: int = 0) -> Path:
    """A 2-layer, 32-wide DistilBERT (no pooler, no token types) with random weights, saved like
    ``save_tiny_bert``."""
    import torch
    from transformers import DistilBertConfig, DistilBertModel, DistilBertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *characters, *(f"##{c}" for c in characters)]
    (path / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n")
    tokenizer = DistilBertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True)
    tokenizer.model_max_length = 64
    torch.manual_seed(seed)
    config = DistilBertConfig(vocab_size=len(tokenizer), dim=32, n_layers=2, n_heads=2, hidden_dim=37,
                              max_position_embeddings=64)
    DistilBertModel(config).eval().save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


# A throwaway loopback cluster: no token authentication between its own processes.
RAY_ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": ""}
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class RayHead:
    gcs_address: str
    dashboard_url: str | None


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def wait_for_port(port: int, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise RuntimeError(f"the Ray head did not come up on 127.0.0.1:{port}")


@contextmanager
def ray_head(log_dir: Path, *, dashboard: bool = False, env: dict | None = None):
    ray_temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # Ray's socket paths must stay under 107 bytes
    gcs, client, dash, agent_http, agent_grpc, metrics, env_agent, worker_low = free_ports(8)
    command = [str(BIN / "ray"), "start", "--head", "--block", "--disable-usage-stats",
               "--node-ip-address", "127.0.0.1", "--port", str(gcs), "--num-cpus", "2",
               "--ray-client-server-port", str(client),
               "--dashboard-agent-listen-port", str(agent_http), "--dashboard-agent-grpc-port", str(agent_grpc),
               "--metrics-export-port", str(metrics), "--runtime-env-agent-port", str(env_agent),
               "--min-worker-port", str(worker_low), "--max-worker-port", str(worker_low + 60),
               "--temp-dir", ray_temp]
    command += (["--include-dashboard", "true", "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash)]
                if dashboard else ["--include-dashboard", "false"])
    log = open(Path(log_dir) / "ray-head.log", "wb")
    head = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env=env or RAY_ENV)
    try:
        wait_for_port(gcs, head)
        if dashboard:
            wait_for_port(dash, head, seconds=120)
        yield RayHead(f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dash}" if dashboard else None)
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        log.close()
        shutil.rmtree(ray_temp, ignore_errors=True)
