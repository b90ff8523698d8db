"""The torch backend: PyTorch runs the model from its own safetensors where onnxruntime would run a graph.

    >>> session = TorchSession(ensure_torch_ready(model), Placement("cuda", "torch", "bf16"))  # doctest: +SKIP
    >>> session.run(["last_hidden_state"], feeds)[0].dtype      # token states, float32  # doctest: +SKIP
    dtype('float32')

``TextEncoder`` holds one in place of an ``onnxruntime.InferenceSession`` and calls it the same way
(``run(output names, feeds)``), so tokenization, length-sorted token-budget batching, pooling, the
model's modules and prompts are the same code on either backend. The model is transformers'
``AutoModel`` with SDPA attention (eager where an architecture has no SDPA), cast to the precision
asked for; the token states come back as float32, so pooling is always fp32. On a GPU the inputs
are copied from pinned memory without blocking, the states back into pinned memory, and a batch
that runs out of GPU memory is split in two and retried (one warning line; later batches are cut to
the size that fitted), so an out-of-memory never loses a shard. Only torch and transformers are
imported (never Ray, optimum or onnxruntime); the APIs used are the same in transformers 4.57 and 5.x
(``AutoModel.from_pretrained(path, attn_implementation=..., use_safetensors=True,
local_files_only=True)``, ``.to(device, dtype)``, ``last_hidden_state``, ``hidden_states``).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from types import SimpleNamespace

import numpy as np

from ..errors import BadInput, EmbedpipeError, first_line
from ..formats.export_dir import ExportedModel
from .batching import BatchPlan
from .devices import Placement, check_cuda, gpu_precision

log = logging.getLogger("embedpipe.encode")

TORCH_INPUTS = ("input_ids", "attention_mask")   # position and token type ids: the model's own defaults
# Bytes of GPU memory one token of a batch may need, per unit of the model's widest layer and byte of
# its dtype (activations of a forward pass without gradients, SDPA attention: no T x T scores kept).
BYTES_PER_TOKEN_WIDTH = 16
FREE_MEMORY_SHARE = 0.5   # of the free memory, at load; the rest for the allocator, other processes, spikes
MAX_GPU_TOKEN_BUDGET = 1 << 20


def torch_dtype(precision: str):
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


class TorchSession:
    """A model on a device, answering ``run(names, feeds)`` with float32 numpy arrays, as onnxruntime does."""

    def __init__(self, exported: ExportedModel, placement: Placement, threads: int | None = None):
        import torch

        self.torch = torch
        if threads and not placement.on_gpu:
            # On a CPU, the worker's CPUs (a Ray actor's share), as onnxruntime's intra-op threads are:
            # torch otherwise takes every core of the host. One setting per process, which is one worker.
            torch.set_num_threads(threads)
        if placement.on_gpu:
            check_cuda(placement.device)   # a Ray actor placed on a node without the GPU it was promised
        self.device = torch.device(placement.device)
        precision = gpu_precision(placement.device) if placement.precision == "auto" else placement.precision
        self.placement = replace(placement, precision=precision)
        self.model, self.attention = load_model(exported.info["model_path"], self.device, torch_dtype(precision))
        self.max_rows: int | None = None   # after an out-of-memory: the most rows a batch fitted in
        self.splits = 0

    def get_inputs(self):
        return [SimpleNamespace(name=name) for name in TORCH_INPUTS]

    def plan_for(self, plan: BatchPlan) -> BatchPlan:
        """``plan`` with its token budget raised to what the GPU's free memory holds (on a CPU: ``plan``)."""
        if self.device.type != "cuda":
            return plan
        free, _ = self.torch.cuda.mem_get_info(self.device)
        config = self.model.config
        width = max(int(getattr(config, "hidden_size", 0) or 0), int(getattr(config, "intermediate_size", 0) or 0))
        per_token = BYTES_PER_TOKEN_WIDTH * max(width, 1) * torch_dtype(self.placement.precision).itemsize
        budget = int(min(MAX_GPU_TOKEN_BUDGET, free * FREE_MEMORY_SHARE // per_token))
        return replace(plan, token_budget=max(plan.token_budget, budget))

    def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        ids, mask = feeds["input_ids"], feeds["attention_mask"]
        if self.max_rows is not None and len(ids) > self.max_rows:
            parts = [self._run_splitting(names, ids[i:i + self.max_rows], mask[i:i + self.max_rows])
                     for i in range(0, len(ids), self.max_rows)]
            return [np.concatenate(arrays) for arrays in zip(*parts)]
        return self._run_splitting(names, ids, mask)

    def _run_splitting(self, names, ids: np.ndarray, mask: np.ndarray) -> list[np.ndarray]:
        """One forward pass; out of GPU memory, two of half the batch each (recursively)."""
        try:
            return self.forward(names, ids, mask)
        except Exception as e:
            if not self.is_out_of_memory(e):
                raise
        if self.device.type == "cuda":
            self.torch.cuda.empty_cache()
        if len(ids) == 1:
            raise EmbedpipeError(f"out of GPU memory on {self.device} encoding one text of {ids.shape[1]} tokens; "
                                 "lower max_length, or free the GPU of other work") from None
        half = (len(ids) + 1) // 2
        if self.splits == 0:
            log.warning("out of GPU memory on %s for a batch of %d texts x %d tokens: splitting it and retrying "
                        "(later batches take at most %d texts)", self.device, len(ids), ids.shape[1], half)
        self.splits += 1
        self.max_rows = half if self.max_rows is None else min(self.max_rows, half)
        first = self._run_splitting(names, ids[:half], mask[:half])
        second = self._run_splitting(names, ids[half:], mask[half:])
        return [np.concatenate(pair) for pair in zip(first, second)]

    def is_out_of_memory(self, error: BaseException) -> bool:
        oom = getattr(self.torch, "OutOfMemoryError", None) or self.torch.cuda.OutOfMemoryError
        return isinstance(error, oom) or (isinstance(error, RuntimeError) and "out of memory" in str(error))

    def forward(self, names, ids: np.ndarray, mask: np.ndarray) -> list[np.ndarray]:
        """The model on one padded batch -> the named token states (B, T, D) as float32 numpy arrays."""
        torch = self.torch
        with torch.inference_mode():
            output = self.model(input_ids=self._to_device(ids), attention_mask=self._to_device(mask),
                                output_hidden_states=any(n != "last_hidden_state" for n in names), return_dict=True)
            states = [output.last_hidden_state if name == "last_hidden_state"
                      else output.hidden_states[int(name.rpartition(".")[2])] for name in names]
            return [host_float32(state) for state in self._to_host(states)]

    def _to_device(self, array: np.ndarray):
        tensor = self.torch.from_numpy(np.ascontiguousarray(array))
        if self.device.type != "cuda":
            return tensor
        return tensor.pin_memory().to(self.device, non_blocking=True)

    def _to_host(self, tensors) -> list:
        """The tensors on the host, in their own dtype: half the bytes of float32 cross the bus for fp16
        and bf16 (``host_float32`` widens them there, exactly)."""
        if self.device.type != "cuda":
            return list(tensors)
        pinned = [self.torch.empty(t.shape, dtype=t.dtype, pin_memory=True) for t in tensors]
        for host, tensor in zip(pinned, tensors):
            host.copy_(tensor, non_blocking=True)
        self.torch.cuda.current_stream(self.device).synchronize()
        return pinned


def host_float32(tensor) -> np.ndarray:
    """A host tensor of float32, float16 or bfloat16 -> a float32 numpy array, exactly (every fp16 and
    bf16 value is a float32 value). numpy has no bfloat16: its bits are the top half of a float32's."""
    import torch

    if tensor.dtype == torch.bfloat16:
        bits = tensor.view(torch.int16).numpy().view(np.uint16).astype(np.uint32) << 16
        return bits.view(np.float32)
    return tensor.numpy().astype(np.float32, copy=False)


def load_model(model_path: str, device, dtype):
    """transformers' AutoModel from the directory's safetensors, with SDPA attention where the
    architecture has it (else eager), on ``device`` in ``dtype``, in eval mode -> (model, attention)."""
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()   # "some weights were not used" (a checkpoint with a head): expected
    hf_logging.disable_progress_bar()  # transformers 5 draws a "Loading weights" bar per model
    try:
        for attention in ("sdpa", "eager"):
            try:
                model = AutoModel.from_pretrained(model_path, attn_implementation=attention, use_safetensors=True,
                                                  local_files_only=True)
                break
            except ValueError as e:   # this architecture has no SDPA implementation
                if attention == "eager" or "attention" not in str(e).lower():
                    raise
    except EmbedpipeError:
        raise
    except Exception as e:
        raise BadInput(f"the torch backend cannot load the model in {model_path}: {type(e).__name__}: "
                       f"{first_line(e)}") from None
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()
    if hasattr(model.config, "use_cache"):
        model.config.use_cache = False   # decoders: no key/value cache to keep, one forward pass per batch
    return model.to(device=device, dtype=dtype).eval(), attention
