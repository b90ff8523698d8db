"""Where and how an encoder runs: the device, the backend and the precision, with ``auto`` resolved.

    >>> check_device("cuda:1")
    'cuda:1'
    >>> resolve_placement("cpu", "auto", "auto")
    Placement(device='cpu', backend='onnx', precision='fp32')

device     auto (a GPU when one is visible, else the CPU), cpu, cuda (the first GPU), cuda:N
backend    auto (torch on a GPU, onnx on a CPU), onnx (onnxruntime, CPUs only), torch (PyTorch: a GPU or a CPU)
precision  auto (bf16 on a GPU that has it, else fp16; fp32 on a CPU), fp32, fp16, bf16 (torch only)

``auto`` looks for a GPU without importing torch where no GPU driver is installed (no /dev/nvidiactl,
/proc/driver/nvidia, /dev/kfd), so a CPU machine pays nothing for it. A GPU asked for that is not
there is one error line naming it, before anything is read or written.
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass

from ..errors import BadInput, ConfigError

DEVICES = ("auto", "cpu", "cuda")             # and cuda:N
BACKENDS = ("auto", "onnx", "torch")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
HALF_PRECISIONS = ("fp16", "bf16")
_CUDA_INDEX = re.compile(r"cuda:(0|[1-9][0-9]{0,3})")
# Files a GPU driver creates (NVIDIA's; AMD's ROCm, which torch also drives as "cuda").
_GPU_DRIVER_FILES = ("/dev/nvidiactl", "/proc/driver/nvidia/version", "/dev/kfd")


@dataclass(frozen=True)
class Placement:
    """A resolved choice: what runs the model, where, at what precision (what manifests record)."""

    device: str      # "cpu", "cuda" or "cuda:N"
    backend: str     # "onnx" or "torch"
    precision: str   # "fp32", "fp16", "bf16", or "auto" where only the GPU itself can tell (a Ray actor's)

    @property
    def on_gpu(self) -> bool:
        return is_cuda(self.device)


def is_cuda(device: str) -> bool:
    return device == "cuda" or device.startswith("cuda:")


def check_device(value, field: str = "device") -> str:
    """``value`` if it names a device (auto, cpu, cuda, cuda:N), else a ConfigError naming ``field``."""
    if not isinstance(value, str) or not (value in DEVICES or _CUDA_INDEX.fullmatch(value)):
        raise ConfigError(field, f"must be one of auto, cpu, cuda, cuda:N (N a GPU number), got {value!r}")
    return value


def check_placement_fields(device, backend, precision) -> None:
    """The three fields' values and the combinations no machine can run (a config checks them when built)."""
    check_device(device)
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ConfigError("backend", f"must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ConfigError("precision", f"must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if backend == "onnx" and is_cuda(device):
        raise ConfigError("backend", "onnx runs on CPUs only (onnxruntime's CPU provider); on a GPU use "
                                     "backend torch (or auto)")
    if backend == "onnx" and precision in HALF_PRECISIONS:
        raise ConfigError("precision", f"{precision} needs backend torch; the onnx backend runs in fp32 "
                                       "(or int8 with quantize)")


def gpu_driver_present() -> bool:
    return any(os.path.exists(f) for f in _GPU_DRIVER_FILES)


def cuda_available() -> bool:
    """Whether torch sees a GPU; False without importing torch where it or a GPU driver is missing."""
    if not gpu_driver_present() or importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def check_cuda(device: str) -> None:
    """Refuse, in one line, a GPU that torch cannot reach here."""
    if importlib.util.find_spec("torch") is None:
        raise BadInput(f"device {device} needs PyTorch with CUDA (pip install torch); it is not installed",
                       fields=("device",))
    import torch

    if not cuda_available():
        raise BadInput(f"device {device}: no CUDA GPU is visible here (torch {torch.__version__} sees none); "
                       "use device cpu or auto", fields=("device",))
    count = torch.cuda.device_count()
    index = int(device.partition(":")[2] or 0)
    if index >= count:
        raise BadInput(f"device {device}: only {count} GPU(s) are visible here (cuda:0 .. cuda:{count - 1})",
                       fields=("device",))


def gpu_precision(device: str) -> str:
    """``auto`` on a GPU: bf16 where it has it (Ampere and later), else fp16."""
    import torch

    with torch.cuda.device(torch.device(device)):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def resolve_placement(device: str, backend: str, precision: str, *, remote_gpus: float = 0.0) -> Placement:
    """``auto`` made concrete for this machine, and a GPU asked for checked to be here.

    With ``remote_gpus`` (Ray actors that each get that many GPUs), the GPU is the actors', not this
    process's: ``auto`` means cuda, nothing is checked here (each actor checks its own), and an
    ``auto`` precision is left for each actor to resolve on its GPU.
    """
    check_placement_fields(device, backend, precision)
    if remote_gpus and not is_cuda(device):
        if device == "cpu":
            raise ConfigError("gpus_per_actor", "asks for GPUs but device is cpu; use device auto or cuda")
        device = "cuda"
    elif device == "auto":
        device = "cuda" if backend != "onnx" and cuda_available() else "cpu"
    if is_cuda(device) and not remote_gpus:
        check_cuda(device)
    if backend == "auto":
        backend = "torch" if is_cuda(device) else "onnx"
    if precision == "auto":
        precision = "fp32" if not is_cuda(device) else ("auto" if remote_gpus else gpu_precision(device))
    return Placement(device, backend, precision)


def placement_record(placement: Placement) -> dict:
    """What a manifest records of how the vectors were made: device, backend, precision."""
    return {"device": placement.device, "backend": placement.backend, "precision": placement.precision}
