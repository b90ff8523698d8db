"""The torch backend (PyTorch running the model's own safetensors), tested on the CPU: its vectors
against the ONNX backend's and sentence-transformers' for every architecture and pooling, the
refusals (a GPU that is not there, combinations no backend runs), an out-of-GPU-memory split
(injected), the Ray option on a CPU-only cluster, and its footprint (no Ray, optimum, onnxruntime).

What a test expects does not depend on the CPU's instruction set: both backends run fp32 here."""

import logging
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import numpy as np
import pytest

from embedpipe.encode import EncodeJob, encode_corpus
from embedpipe.encode.devices import Placement, cuda_available, gpu_driver_present, resolve_placement
from embedpipe.encode.encoder import EncoderSpec, TextEncoder
from embedpipe.errors import ConfigError, EmbedpipeError
from embedpipe.formats.vectors import open_vectors
from tests.encode import test_architectures, test_parity
from tests.encode.test_architectures import ARCHITECTURES, QUERIES, document_prompt
from tests.encode.test_parity import ST_MODES, TINY_MAX_LENGTH
from tests.helpers import (
    MODEL_VARIANTS,
    TEXTS,
    WORDS,
    assert_one_line_error,
    names_under,
    row_cosines,
    run_cli,
    snapshot,
)

# The references those modules build (sentence-transformers' vectors), as fixtures of this module too.
reference, st_reference = test_architectures.reference, test_parity.st_reference
TORCH_CPU = {"backend": "torch", "device": "cpu"}
no_gpu = pytest.mark.skipif(cuda_available(), reason="a GPU is visible here: the no-GPU refusal cannot happen")


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_torch_backend_equals_onnx_and_sentence_transformers_for_every_architecture(architecture, reference, corpus,
                                                                                    tmp_path):
    """Documents through the whole job (encode_corpus, local runner), queries through TextEncoder: the
    model's pooling, modules and prompts, on either backend, give sentence-transformers' vectors."""
    model_dir, documents, queries = reference(architecture)
    prompt = document_prompt(architecture)
    result = encode_corpus(EncodeJob(str(corpus), out=str(tmp_path / "v"), runner="local", batch_size=3,
                                     spec=EncoderSpec(model=str(model_dir), **prompt, **TORCH_CPU)))
    assert {k: result.manifest["last_run"][k] for k in ("device", "backend", "precision")} == \
        {"device": "cpu", "backend": "torch", "precision": "fp32"}
    ids, torch_vectors = open_vectors(result.out).read_all()
    assert ids.to_pylist() == list(range(len(TEXTS)))
    onnx_vectors = TextEncoder.load(EncoderSpec(model=str(model_dir), backend="onnx", **prompt)).encode(TEXTS)
    assert row_cosines(torch_vectors, documents).min() >= 0.9999
    assert row_cosines(torch_vectors, onnx_vectors).min() >= 0.9999
    query_prompt = MODEL_VARIANTS[architecture].get("prompts", {}).get("query", "")
    torch_queries = TextEncoder.load(EncoderSpec(model=str(model_dir), prompt=query_prompt, **TORCH_CPU))
    assert type(torch_queries.session).__name__ == "TorchSession"
    assert row_cosines(torch_queries.encode(QUERIES), queries).min() >= 0.9999
    # The comparison can fail: different texts get clearly different vectors.
    unit = documents / np.linalg.norm(documents, axis=1, keepdims=True)
    assert (unit @ unit.T)[~np.eye(len(TEXTS), dtype=bool)].max() < 0.999


def test_every_pooling_on_the_torch_backend_matches_sentence_transformers(tiny_model_dir, st_reference):
    for pooling in sorted(ST_MODES):
        encoder = TextEncoder.load(EncoderSpec(model=str(tiny_model_dir), pooling=pooling, normalize=False,
                                               max_length=TINY_MAX_LENGTH, **TORCH_CPU))
        cosines = row_cosines(encoder.encode(TEXTS), st_reference[pooling])
        assert cosines.min() >= 0.9999, (pooling, cosines)


def test_pooler_on_the_torch_backend_matches_the_onnx_backend(tiny_model_dir):
    spec = EncoderSpec(model=str(tiny_model_dir), pooling="pooler", normalize=False)
    onnx = TextEncoder.load(spec).encode(TEXTS)
    np.testing.assert_allclose(TextEncoder.load(EncoderSpec(**{**spec.__dict__, **TORCH_CPU})).encode(TEXTS), onnx,
                               atol=1e-5)


def test_out_of_gpu_memory_splits_the_batch_with_one_warning_and_the_same_vectors(tiny_model_dir, caplog):
    """A CUDA out-of-memory, injected on batches of more than 2 texts (torch raises the same error type
    on a GPU), splits each batch until it fits: one warning line, the same vectors, and later
    batches cut to the size that fitted."""
    import torch

    texts = [" ".join(WORDS[i:i + 5]) for i in range(9)]   # one token a word: one batch of 9
    spec = EncoderSpec(model=str(tiny_model_dir), **TORCH_CPU)
    expected = TextEncoder.load(spec).encode(texts)
    encoder = TextEncoder.load(spec)
    forward, sizes = encoder.session.forward, []

    def tight_memory(names, ids, mask):
        if len(ids) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        sizes.append(len(ids))
        return forward(names, ids, mask)

    encoder.session.forward = tight_memory
    with caplog.at_level(logging.WARNING, logger="embedpipe.encode"):
        got = encoder.encode(texts)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    warnings = [r for r in caplog.records if "out of GPU memory" in r.getMessage()]
    assert len(warnings) == 1 and "\n" not in warnings[0].getMessage()
    assert encoder.session.splits >= 3 and encoder.session.max_rows == 2 and sorted(sizes) == [1, 2, 2, 2, 2]
    assert "a batch of 9 texts" in warnings[0].getMessage()
    # One text that does not fit is an error naming what to do, not a crash.
    encoder.session.forward = lambda names, ids, mask: (_ for _ in ()).throw(torch.OutOfMemoryError("CUDA oom"))
    with pytest.raises(EmbedpipeError, match="out of GPU memory .* one text"):
        encoder.encode(TEXTS[:1])


def test_half_precision_states_widen_to_float32_exactly_on_the_host():
    """fp16 / bf16 token states cross to the host in their own dtype (half the bytes) and are widened
    there: bit for bit what torch's own .float() gives."""
    import torch

    from embedpipe.encode.torch_session import host_float32

    states = torch.randn(3, 5, 7) * 100
    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        half = states.to(dtype)
        np.testing.assert_array_equal(host_float32(half), half.float().numpy())


def test_bf16_on_the_cpu_stays_close_to_fp32(tiny_model_dir):
    fp32 = TextEncoder.load(EncoderSpec(model=str(tiny_model_dir), **TORCH_CPU)).encode(TEXTS)
    bf16 = TextEncoder.load(EncoderSpec(model=str(tiny_model_dir), precision="bf16", **TORCH_CPU))
    assert bf16.session.placement.precision == "bf16" and bf16.session.model.dtype.itemsize == 2
    cosines = row_cosines(bf16.encode(TEXTS), fp32)
    assert 0.99 <= cosines.min() and cosines.min() < 1.0   # rounded, and so not bit-equal to fp32


@no_gpu
def test_a_gpu_that_is_not_there_is_one_line_and_nothing_is_written(corpus, tmp_path, export_cache):
    before, cache_before = snapshot(tmp_path), names_under(export_cache)
    for device in ("cuda", "cuda:1"):
        result = run_cli("encode", corpus, "--device", device, "--out", tmp_path / "v", "--runner", "local")
        assert_one_line_error(result, f"--device {device}", "no CUDA GPU is visible")
        result = run_cli("search", tmp_path / "no-index", "--query", "a cat", "--device", device)
        assert result.exit_code != 0 and "Traceback" not in result.output
    assert snapshot(tmp_path) == before and names_under(export_cache) == cache_before


def test_a_gpu_number_past_the_last_is_refused(corpus, tmp_path):
    result = run_cli("encode", corpus, "--device", "cuda:99", "--out", tmp_path / "v", "--runner", "local")
    assert_one_line_error(result, "--device cuda:99")
    assert not (tmp_path / "v").exists()


@pytest.mark.parametrize("args, fragments", [
    (["--device", "gpu"], ["--device", "auto, cpu, cuda, cuda:N"]),
    (["--device", "cuda", "--backend", "onnx"], ["--backend", "onnx runs on CPUs only"]),
    (["--precision", "fp16", "--backend", "onnx"], ["--precision", "fp16 needs backend torch"]),
    (["--backend", "torch", "--quantize", "int8"], ["--quantize", "onnx backend option"]),
    (["--runner", "local", "--gpus-per-actor", "1"], ["--gpus-per-actor", "Ray runner"]),
    (["--gpus-per-actor", "-1"], ["--gpus-per-actor"]),
    (["--gpus-per-actor", "nan"], ["--gpus-per-actor"]),
    (["--gpus-per-actor", "0.000001"], ["--gpus-per-actor", "at least 0.01"]),
])
def test_combinations_no_backend_runs_are_one_line(corpus, tmp_path, args, fragments):
    result = run_cli("encode", corpus, "--out", tmp_path / "v", *args)
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "v").exists()


def test_a_model_without_safetensors_is_refused_by_the_torch_backend_in_one_line(tiny_model_dir, corpus, tmp_path):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model, ignore=shutil.ignore_patterns("*.safetensors"))
    result = run_cli("encode", corpus, "--model", model, "--backend", "torch", "--device", "cpu",
                     "--out", tmp_path / "v", "--runner", "local")
    assert_one_line_error(result, "no model.safetensors", "never a pickle")
    assert not (tmp_path / "v").exists()


def test_the_fields_are_checked_in_python_as_on_the_command_line():
    with pytest.raises(ConfigError, match="device must be one of auto, cpu, cuda, cuda:N"):
        EncoderSpec(device="cuda:x")
    with pytest.raises(ConfigError, match="precision"):
        EncoderSpec(precision="int4")
    with pytest.raises(ConfigError, match="gpus_per_actor .* device is cpu"):
        resolve_placement("cpu", "auto", "auto", remote_gpus=0.5)
    # GPUs on Ray actors: the driver needs none; each actor resolves auto precision on its own GPU.
    assert resolve_placement("auto", "auto", "auto", remote_gpus=0.5) == Placement("cuda", "torch", "auto")


@pytest.mark.skipif(gpu_driver_present(), reason="a GPU driver is installed: auto imports torch to ask it")
def test_auto_on_a_machine_without_a_gpu_driver_is_the_onnx_cpu_path_without_importing_torch():
    code = ("import sys; from embedpipe.encode.devices import resolve_placement; "
            "print(resolve_placement('auto', 'auto', 'auto'), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "Placement(device='cpu', backend='onnx', precision='fp32') False"


def test_the_torch_path_imports_neither_ray_nor_optimum_nor_onnxruntime(tiny_st_model, corpus, tmp_path):
    """Encode a corpus in process on the torch backend in a Python whose packages are this one's less
    those three (as on a GPU machine with only torch, transformers, tokenizers, pyarrow and numpy)."""
    model_dir = tiny_st_model("bert")
    packages = tmp_path / "site-packages"
    packages.mkdir()
    left_out = set()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if entry.name.split("-")[0].split(".")[0] in ("ray", "optimum", "optimum_onnx", "onnxruntime"):
            left_out.add(entry.name.split("-")[0])
        elif entry.suffix != ".pth":
            (packages / entry.name).symlink_to(entry)
    assert left_out == {"ray", "optimum", "optimum_onnx", "onnxruntime"}, left_out
    script = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(packages)!r}, {str(Path(__file__).parents[2])!r}]
        from embedpipe.encode import EncodeJob, EncoderSpec, encode_corpus
        result = encode_corpus(EncodeJob({str(corpus)!r}, out={str(tmp_path / 'v')!r}, runner="auto",
                                         spec=EncoderSpec(model={str(model_dir)!r}, backend="torch", device="cpu")))
        print(result.manifest["rows"], result.manifest["last_run"]["backend"],
              sorted(m for m in sys.modules if m.split(".")[0] in ("ray", "optimum", "onnxruntime")))
    """)
    # -S: no site-packages of this Python but the filtered copy (and no .pth files: embedpipe is on the path).
    done = subprocess.run([sys.executable, "-S", "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split("\n")[-2] == f"{len(TEXTS)} torch []"


@pytest.mark.slow
def test_gpus_per_actor_on_a_ray_cluster_without_gpus_is_one_line(tiny_model_dir, corpus, tmp_path, ray_cluster):
    address = ray_cluster.get_runtime_context().gcs_address
    result = run_cli("encode", corpus, "--model", tiny_model_dir, "--out", tmp_path / "v", "--runner", "ray",
                     "--ray-address", address, "--gpus-per-actor", "0.5")
    assert_one_line_error(result, "gpus_per_actor 0.5 asks for GPUs", "the Ray cluster has none")
    assert not (tmp_path / "v" / "manifest.json").exists()


def test_every_layer_and_pooling_of_classify_s_grid_on_the_torch_backend_equals_the_onnx_one(tiny_model_dir):
    """classify's frozen features on a GPU come from the torch backend's hidden states: layer by layer
    the same vectors as the all-layers ONNX export gives (here both on the CPU)."""
    from embedpipe.encode.layers import PoolingGridEncoder
    from embedpipe.model.resolve import resolve_model
    from embedpipe.model.torch_export import ensure_torch_ready

    pairs = [(pooling, layer) for pooling in ("cls", "mean", "max") for layer in (0, 1, 2)]
    onnx = PoolingGridEncoder.load(model=str(tiny_model_dir), normalize=False, max_length=None, layers=[0, 1, 2],
                                   device="cpu")
    torch_grid = PoolingGridEncoder(ensure_torch_ready(resolve_model(str(tiny_model_dir))), False, onnx.max_length,
                                    placement=Placement("cpu", "torch", "fp32"))
    expected, _ = onnx.encode_many(TEXTS, pairs)
    got, tokens = torch_grid.encode_many(TEXTS, pairs, token_states=True)
    for pair in pairs:
        assert row_cosines(got[pair], expected[pair]).min() >= 0.9999, pair
    assert tokens.states.shape[0] == onnx.count_tokens(TEXTS)

