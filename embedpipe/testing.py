"""Real pieces for tests and benchmarks: small models (nothing is downloaded) and a Ray head.

    >>> save_tiny_bert(Path("tiny-bert"), words=["cat", "dog"])   # a hub-style model directory  # doctest: +SKIP
    >>> save_tiny_distilbert(Path("tiny-distilbert"), words=["cat", "dog"])                  # doctest: +SKIP
    >>> with ray_head(log_dir) as head:                           # `ray start --head` on 127.0.0.1  # doctest: +SKIP
    ...     head.gcs_address                                      # "127.0.0.1:PORT", for --ray-address
    ...     with ray_node(head, log_dir, cpus=1) as node:         # a second node (`ray start --address`)
    ...         node.kill_raylet()                                # lose it, as a crashed machine would
    >>> with s3_server(log_dir) as s3:                            # moto's S3 API server on 127.0.0.1  # doctest: +SKIP
    ...     s3.env                                                # AWS_ENDPOINT_URL & co. for any AWS client

The Ray head, each extra node and the S3 server run in process groups of their own on free loopback
ports of their own and are stopped by that group's id (never `ray stop`, which would stop every Ray
on the machine).
"""

from __future__ import annotations

import json
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


def save_tiny_bert(path: Path, words: Sequence[str], characters: str = LETTERS, seed: int = 0,
                   initializer_range: float = 0.02) -> Path:
    """A 2-layer, 32-wide BERT with random weights (normal, std ``initializer_range``) and a WordPiece
    vocab of ``words`` plus single ``characters`` (and their ``##`` continuations), saved like a hub
    model; 64 tokens at most."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    vocab = _wordpiece(words, characters, BERT_SPECIALS, path)
    tokenizer = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
    tokenizer.model_max_length = 64
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=37, max_position_embeddings=64, initializer_range=initializer_range)
    BertModel(config).eval().save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def save_tiny_distilbert(path: Path, words: Sequence[str], characters: str = LETTERS, seed: int = 0) -> Path:
    """A 2-layer, 32-wide DistilBERT (no pooler, no token types) with random weights, saved like
    ``save_tiny_bert``."""
    import torch
    from transformers import DistilBertConfig, DistilBertModel, DistilBertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    vocab = _wordpiece(words, characters, BERT_SPECIALS, path)
    tokenizer = DistilBertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
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


WORKER_PORTS = 61  # the range --min-worker-port .. --max-worker-port of a node started here


def ray_ports(n: int) -> tuple[list[int], int]:
    """``n`` free ports for a node's components, and the first of ``WORKER_PORTS`` consecutive ports
    for its workers, a range holding none of the ``n``: Ray refuses to start a node whose ports overlap."""
    while True:
        *ports, low = free_ports(n + 1)
        if low + WORKER_PORTS <= 65536 and not any(low <= port < low + WORKER_PORTS for port in ports):
            return ports, low


def wait_for_port(port: int, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise RuntimeError(f"the Ray head did not come up on 127.0.0.1:{port}")


@contextmanager
def ray_head(log_dir: Path, *, dashboard: bool = False, env: dict | None = None, cpus: int = 2,
             system_config: dict | None = None, stop_seconds: float = 30):
    """``ray start --head`` with ``cpus`` CPUs; ``system_config`` (Ray's ``--system-config``), e.g.
    a quick node health check, so a lost node is noticed in seconds."""
    ray_temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # Ray's socket paths must stay under 107 bytes
    (gcs, client, dash, agent_http, agent_grpc, metrics, env_agent), worker_low = ray_ports(7)
    command = [str(BIN / "ray"), "start", "--head", "--block", "--disable-usage-stats",
               "--node-ip-address", "127.0.0.1", "--port", str(gcs), "--num-cpus", str(cpus),
               "--ray-client-server-port", str(client),
               "--dashboard-agent-listen-port", str(agent_http), "--dashboard-agent-grpc-port", str(agent_grpc),
               "--metrics-export-port", str(metrics), "--runtime-env-agent-port", str(env_agent),
               "--min-worker-port", str(worker_low), "--max-worker-port", str(worker_low + WORKER_PORTS - 1),
               "--temp-dir", ray_temp]
    if system_config:
        command += ["--system-config", json.dumps(system_config)]
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
        _stop_group(head, stop_seconds)
        log.close()
        shutil.rmtree(ray_temp, ignore_errors=True)


# ---- tiny models of every architecture embedpipe supports, saved as sentence-transformers models ----

TINY_WIDTH, TINY_LAYERS, TINY_HEADS, TINY_FFN, TINY_TOKENS = 32, 2, 2, 37, 64
# Weights drawn wider than transformers' default (std 0.02), so attention is far from uniform and
# every token state, the first one too, depends on the text: with the default, a tiny BERT's [CLS]
# state barely moves between texts, and parity of cls pooling would hold for any texts at all.
TINY_INIT = 0.5
ARCHITECTURES = ("bert", "distilbert", "roberta", "xlm-roberta", "mpnet", "modernbert", "qwen2")


def _training_text(words: Sequence[str], characters: str) -> list[str]:
    """What the BPE / unigram tokenizers are trained on: the words, their pairs, and single characters."""
    words = list(words)
    pairs = [f"{a} {b}" for a, b in zip(words, words[1:] + words[:1])]
    return words + pairs + list(characters) + [" ".join(words)]


BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def _wordpiece(words: Sequence[str], characters: str, specials: Sequence[str], path: Path) -> Path:
    vocab = [*specials, *words, *characters, *(f"##{c}" for c in characters)]
    (path / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n")
    return path / "vocab.txt"


def _byte_bpe(words: Sequence[str], characters: str, specials: Sequence[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=list(specials), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(_training_text(words, characters), trainer)
    return tokenizer


def _unigram(words: Sequence[str], characters: str, specials: Sequence[str]):
    """A sentencepiece-style unigram tokenizer (what XLM-R ships), trained here with ``tokenizers``."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=300, special_tokens=list(specials), unk_token="<unk>",
                                      show_progress=False)
    tokenizer.train_from_iterator(_training_text(words, characters), trainer)
    return tokenizer


def _template(tokenizer, first: str | None, last: str) -> None:
    """``first $A last`` around every text (``$A last`` when ``first`` is None), as the real tokenizers do."""
    from tokenizers import processors

    ids = {t: tokenizer.token_to_id(t) for t in (first, last) if t}
    single = f"{first} $A {last}" if first else f"$A {last}"
    tokenizer.post_processor = processors.TemplateProcessing(single=single, pair=f"{single} $B {last}",
                                                             special_tokens=list(ids.items()))


def save_tiny_transformer(path: Path, architecture: str, words: Sequence[str], characters: str = LETTERS,
                          seed: int = 0) -> Path:
    """A 2-layer, 32-wide random model of ``architecture`` (one of ARCHITECTURES) with its own kind of
    tokenizer made here (WordPiece, byte-level BPE, or a sentencepiece-style unigram), saved like a hub model."""
    import torch
    import transformers as tf

    if architecture == "bert":
        return save_tiny_bert(path, words, characters, seed, initializer_range=TINY_INIT)
    path.mkdir(parents=True, exist_ok=True)
    common = dict(vocab_size=0, hidden_size=TINY_WIDTH, num_hidden_layers=TINY_LAYERS,
                  num_attention_heads=TINY_HEADS, intermediate_size=TINY_FFN, max_position_embeddings=TINY_TOKENS,
                  initializer_range=TINY_INIT)
    roberta_specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]   # pad id 1, as RoBERTa / XLM-R have it
    if architecture == "distilbert":
        vocab = _wordpiece(words, characters, BERT_SPECIALS, path)
        tokenizer = tf.DistilBertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
        config = tf.DistilBertConfig(vocab_size=len(tokenizer), dim=TINY_WIDTH, n_layers=TINY_LAYERS,
                                     n_heads=TINY_HEADS, hidden_dim=TINY_FFN, max_position_embeddings=TINY_TOKENS,
                                     initializer_range=TINY_INIT)
    elif architecture == "mpnet":
        vocab = _wordpiece(words, characters, ["<s>", "<pad>", "</s>", "<unk>", "[UNK]", "<mask>"], path)
        tokenizer = tf.MPNetTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
        config = tf.MPNetConfig(**{**common, "vocab_size": len(tokenizer), "max_position_embeddings": TINY_TOKENS + 2})
    elif architecture in ("roberta", "xlm-roberta"):
        bpe = architecture == "roberta"
        raw = (_byte_bpe if bpe else _unigram)(words, characters, roberta_specials)
        _template(raw, "<s>", "</s>")
        cls = tf.RobertaTokenizerFast if bpe else tf.XLMRobertaTokenizerFast
        tokenizer = cls(tokenizer_object=raw, **({"add_prefix_space": False} if bpe else {}))
        # Positions start after the padding id (RoBERTa's offset), so the table needs two more rows.
        config = (tf.RobertaConfig if bpe else tf.XLMRobertaConfig)(
            **{**common, "vocab_size": len(tokenizer), "max_position_embeddings": TINY_TOKENS + 2},
            pad_token_id=1, bos_token_id=0, eos_token_id=2)
    elif architecture == "modernbert":
        vocab = _wordpiece(words, characters, BERT_SPECIALS, path)
        tokenizer = tf.BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
        tokenizer = tf.PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend_tokenizer, pad_token="[PAD]",
                                               unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                                               mask_token="[MASK]", model_input_names=["input_ids", "attention_mask"])
        config = tf.ModernBertConfig(vocab_size=len(tokenizer), hidden_size=TINY_WIDTH,
                                     num_hidden_layers=TINY_LAYERS, num_attention_heads=TINY_HEADS,
                                     intermediate_size=TINY_FFN, max_position_embeddings=TINY_TOKENS,
                                     pad_token_id=0, cls_token_id=2, sep_token_id=3, bos_token_id=2, eos_token_id=3,
                                     global_attn_every_n_layers=2, local_attention=16, initializer_range=TINY_INIT)
    elif architecture == "qwen2":
        # Like Qwen3-Embedding: byte-level BPE, the EOS appended to every text, padding on the left.
        raw = _byte_bpe(words, characters, ["<|endoftext|>"])
        _template(raw, None, "<|endoftext|>")
        tokenizer = tf.PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|endoftext|>",
                                               pad_token="<|endoftext|>", padding_side="left",
                                               model_input_names=["input_ids", "attention_mask"])
        config = tf.Qwen2Config(**{**common, "vocab_size": len(tokenizer)}, num_key_value_heads=1,
                                eos_token_id=0, pad_token_id=0, bos_token_id=None, tie_word_embeddings=False)
    else:
        raise ValueError(f"unknown architecture {architecture!r}; choose one of {', '.join(ARCHITECTURES)}")
    tokenizer.model_max_length = TINY_TOKENS
    torch.manual_seed(seed)
    tf.AutoModel.from_config(config).eval().save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


# One tiny sentence-transformers model per architecture, each configured like a known family, so that
# between them every pooling mode, module after pooling and prompt arrangement is exercised
# (arguments of save_tiny_sentence_transformer; pooling is sentence-transformers' name).
TINY_MODEL_VARIANTS = {
    "bert": dict(pooling="cls", dense=16, normalize=True,                      # BGE-like, with a Dense
                 prompts={"query": "query: ", "document": "passage: "}),
    "distilbert": dict(pooling="mean", normalize=True),                        # all-MiniLM-like, no prompts
    "roberta": dict(pooling="max", layer_norm=True,                            # nomic-like prompts
                    prompts={"query": "search_query: ", "document": "search_document: "}),
    "xlm-roberta": dict(pooling="mean", normalize=True,                        # multilingual-E5-like
                        prompts={"query": "query: ", "passage": "passage: "}),
    "mpnet": dict(pooling="mean_sqrt_len_tokens", dense=24, activation="identity"),
    "modernbert": dict(pooling="weightedmean", dense=20, activation="gelu",    # INSTRUCTOR-like: the prompt
                       include_prompt=False,                                   # is left out of the pooling
                       prompts={"query": "Represent the question: ", "document": "Represent the document: "}),
    "qwen2": dict(pooling="lasttoken", normalize=True,                         # Qwen3-Embedding-like decoder
                  prompts={"query": "Instruct: find the text\nQuery: "}),
}
# The vector width each variant promises (the Dense output where there is one, else the hidden size 32).
TINY_MODEL_DIMS = {name: variant.get("dense", TINY_WIDTH) for name, variant in TINY_MODEL_VARIANTS.items()}



TORCH_ACTIVATIONS = {"tanh": "torch.nn.modules.activation.Tanh", "identity": "torch.nn.modules.linear.Identity",
                     "relu": "torch.nn.modules.activation.ReLU", "gelu": "torch.nn.modules.activation.GELU"}


def save_tiny_sentence_transformer(path: Path, transformer_dir: Path, pooling: str = "mean", *,
                                   dense: int | None = None, activation: str = "tanh", layer_norm: bool = False,
                                   normalize: bool = False, prompts: dict | None = None,
                                   include_prompt: bool = True, seed: int = 0) -> Path:
    """``transformer_dir`` as a sentence-transformers model, written file by file as the hub's are
    (sentence-transformers itself is not needed): its Pooling (a sentence-transformers mode name: cls,
    mean, max, mean_sqrt_len_tokens, weightedmean, lasttoken), then a Dense to ``dense`` dims with
    ``activation`` (tanh, identity, relu, gelu) and random weights, a LayerNorm (not the identity), a
    Normalize, as asked; ``prompts`` in config_sentence_transformers.json."""
    import numpy as np
    from safetensors.numpy import save_file

    shutil.copytree(transformer_dir, path)  # the Transformer module lives in the model directory itself
    config = json.loads((path / "config.json").read_text())
    width = int(config.get("hidden_size") or config["dim"])
    rng = np.random.default_rng(seed)
    modules = [("", "sentence_transformers.models.Transformer"), ("1_Pooling", "sentence_transformers.models.Pooling")]
    (path / "1_Pooling").mkdir()
    _write_json(path / "1_Pooling" / "config.json",
                {"embedding_dimension": width, "pooling_mode": pooling, "include_prompt": include_prompt})
    if dense:
        folder = path / f"{len(modules)}_Dense"
        folder.mkdir()
        _write_json(folder / "config.json", {"in_features": width, "out_features": dense, "bias": True,
                                             "activation_function": TORCH_ACTIVATIONS[activation]})
        bound = 1 / np.sqrt(width)  # torch.nn.Linear's initialization range
        weights = {"linear.weight": rng.uniform(-bound, bound, (dense, width)).astype(np.float32),
                   "linear.bias": rng.uniform(-bound, bound, dense).astype(np.float32)}
        save_file(weights, str(folder / "model.safetensors"))
        modules.append((folder.name, "sentence_transformers.models.Dense"))
        width = dense
    if layer_norm:
        folder = path / f"{len(modules)}_LayerNorm"
        folder.mkdir()
        _write_json(folder / "config.json", {"dimension": width})
        save_file({"norm.weight": rng.uniform(0.5, 1.5, width).astype(np.float32),
                   "norm.bias": rng.uniform(-0.5, 0.5, width).astype(np.float32)}, str(folder / "model.safetensors"))
        modules.append((folder.name, "sentence_transformers.models.LayerNorm"))
    if normalize:
        (path / f"{len(modules)}_Normalize").mkdir()
        modules.append((f"{len(modules)}_Normalize", "sentence_transformers.models.Normalize"))
    _write_json(path / "modules.json", [{"idx": i, "name": str(i), "path": folder, "type": kind}
                                        for i, (folder, kind) in enumerate(modules)])
    _write_json(path / "sentence_bert_config.json", {"max_seq_length": TINY_TOKENS, "do_lower_case": False})
    _write_json(path / "config_sentence_transformers.json",
                {"model_type": "SentenceTransformer", "prompts": dict(prompts or {}), "default_prompt_name": None,
                 "similarity_fn_name": "cosine"})
    return path


def _write_json(path: Path, value) -> None:
    path.write_text(json.dumps(value, indent=2))


def _stop_group(process: subprocess.Popen, seconds: float = 30) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=seconds)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)   # whatever of the group is left
    except ProcessLookupError:
        pass
    process.wait()


@dataclass
class RayNode:
    process: subprocess.Popen      # `ray start --block` (leader of the node's process group)

    def descendants(self) -> list[tuple[int, bytes]]:
        """(pid, command) of every process started under this node's `ray start`, by parent links
        (Ray's workers start sessions of their own, so the process group does not hold them)."""
        children: dict[int, list[int]] = {}
        commands: dict[int, bytes] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                    commands[int(entry.name)] = (entry / "cmdline").read_bytes().split(b"\0")[0]
                except (OSError, ValueError, IndexError):
                    continue
                children.setdefault(parent, []).append(int(entry.name))
        found, todo = [], [self.process.pid]
        while todo:
            for child in children.get(todo.pop(), []):
                found.append((child, commands.get(child, b"")))
                todo.append(child)
        return found

    def kill_raylet(self, with_workers: bool = True) -> int:
        """SIGKILL this node's raylet, then (``with_workers``) every process under it, its workers
        and actors among them: the node is lost as if its machine crashed. (On loopback a worker
        whose raylet alone died keeps answering its caller for a while.)"""
        processes = self.descendants()
        raylets = [pid for pid, command in processes if command.endswith(b"/raylet")]
        if not raylets:
            raise RuntimeError("no raylet found for this node")
        for pid in raylets + ([pid for pid, _ in processes if pid not in raylets] if with_workers else []):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(raylets)


@contextmanager
def ray_node(head: RayHead, log_dir: Path, *, cpus: int = 1, env: dict | None = None, name: str = "node"):
    """A worker node (`ray start --address HEAD`) with ``cpus`` CPUs, on ports of its own."""
    ray_temp = tempfile.mkdtemp(prefix="rayn-", dir="/tmp")
    (manager, agent_http, agent_grpc, metrics, env_agent), worker_low = ray_ports(5)
    command = [str(BIN / "ray"), "start", "--address", head.gcs_address, "--block", "--disable-usage-stats",
               "--node-ip-address", "127.0.0.1", "--num-cpus", str(cpus), "--node-manager-port", str(manager),
               "--dashboard-agent-listen-port", str(agent_http), "--dashboard-agent-grpc-port", str(agent_grpc),
               "--metrics-export-port", str(metrics), "--runtime-env-agent-port", str(env_agent),
               "--min-worker-port", str(worker_low), "--max-worker-port", str(worker_low + WORKER_PORTS - 1),
               "--temp-dir", ray_temp]
    log = open(Path(log_dir) / f"ray-{name}.log", "wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                               env=env or RAY_ENV)
    try:
        wait_for_port(manager, process)
        yield RayNode(process)
    finally:
        _stop_group(process, seconds=5)
        log.close()
        shutil.rmtree(ray_temp, ignore_errors=True)


def wait_for_nodes(head: RayHead, nodes: int, env: dict | None = None, seconds: float = 60) -> None:
    """Until the cluster at ``head`` counts ``nodes`` alive nodes (a node that just started may not
    have registered with the head yet)."""
    probe = ("import ray, sys, time; ray.init(address=sys.argv[1], logging_level='ERROR', log_to_driver=False)\n"
             "deadline = time.monotonic() + float(sys.argv[3])\n"
             "while sum(n['Alive'] for n in ray.nodes()) < int(sys.argv[2]) and time.monotonic() < deadline:\n"
             "    time.sleep(0.2)\n"
             "sys.exit(0 if sum(n['Alive'] for n in ray.nodes()) >= int(sys.argv[2]) else 1)")
    result = subprocess.run([sys.executable, "-c", probe, head.gcs_address, str(nodes), str(seconds)],
                            env=env or RAY_ENV, capture_output=True, timeout=seconds + 60)
    if result.returncode:
        raise RuntimeError(f"the cluster did not reach {nodes} nodes: {result.stderr[-2000:]!r}")


@dataclass(frozen=True)
class S3Server:
    endpoint: str       # http://127.0.0.1:PORT
    env: dict           # os.environ plus the AWS variables every client reads, pointing at it


@contextmanager
def s3_server(log_dir: Path, buckets: Sequence[str] = ("embedpipe",)):
    """moto's S3 API server (``moto_server``) on a free loopback port, with ``buckets`` created;
    stopped by its process group's id."""
    (port,) = free_ports(1)
    log = open(Path(log_dir) / "s3-server.log", "wb")
    process = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"
    env = {**RAY_ENV, "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
           "AWS_EC2_METADATA_DISABLED": "true"}
    try:
        wait_for_port(port, process)
        import pyarrow.fs as pafs

        filesystem = pafs.S3FileSystem(endpoint_override=endpoint, access_key="testing", secret_key="testing",
                                       region="us-east-1", scheme="http", allow_bucket_creation=True)
        for bucket in buckets:
            filesystem.create_dir(bucket)
        yield S3Server(endpoint, env)
    finally:
        _stop_group(process, seconds=10)
        log.close()
