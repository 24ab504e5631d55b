"""Hardware backends: which device, which precision, and how many processes.

One code path serves one process and many. Process groups come from ``accelerate`` (its
``PartialState`` reads what ``torchrun`` or ``accelerate launch`` set); models are wrapped in
``DistributedDataParallel`` when more than one process runs.
"""

from __future__ import annotations

import contextlib
import os
import platform
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from kd_core.errors import ConfigError

Precision = Literal["fp32", "bf16", "fp16"]
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def pick_device(device: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; anything else is checked and returned."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError("device", "'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'", device) from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", "an available device (CUDA is not available here)", device)
    return chosen


class PrecisionWarning(UserWarning):
    """The device runs the chosen ``--precision`` without native support: slower than fp32, not faster."""


def read_cpu_flags(path: Path = Path("/proc/cpuinfo")) -> frozenset[str] | None:
    """The CPU's feature flags (x86 ``flags``, Arm ``Features``) from ``/proc/cpuinfo``; None if unreadable."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return None


_X86 = {"x86_64", "amd64", "i386", "i686"}
_ARM = {"aarch64", "arm64"}


def slow_precision(device: torch.device, precision: str, cpu_flags: Callable[[], frozenset[str] | None] | None = None,
                   machine: str | None = None, cuda_capability: tuple[int, int] | None = None) -> str | None:
    """Why ``precision`` is slow on ``device`` (a one-line message), or None if it is native or unknown.

    CPU: fp16 is always emulated; bf16 needs ``avx512_bf16`` or ``amx_bf16`` (x86) or ``bf16`` (Arm) among
    the CPU flags. CUDA: bf16 needs compute capability 8.0, fp16 7.0. ``cpu_flags``, ``machine`` and
    ``cuda_capability`` are read from this machine unless given (tests inject them).
    """
    if precision == "fp32":
        return None
    if device.type == "cpu":
        if precision == "fp16":
            return ("--precision fp16: expected a device with fast fp16 (a CUDA GPU), received a CPU, where fp16 "
                    "is emulated and runs slower than fp32 (use --precision fp32, or bf16 on a CPU with "
                    "avx512_bf16/amx_bf16)")
        arch = (machine if machine is not None else platform.machine()).lower()
        if arch in _X86:
            wanted = ("avx512_bf16", "amx_bf16")
        elif arch in _ARM:
            wanted = ("bf16",)
        else:
            return None
        flags = (cpu_flags or read_cpu_flags)()
        if flags is None or any(flag in flags for flag in wanted):
            return None
        article = "an" if arch.startswith(("a", "x86")) else "a"
        return (f"--precision bf16: expected a CPU with native bf16 (flag {' or '.join(wanted)}), received "
                f"{article} {arch} CPU without it, where bf16 is emulated and runs slower than fp32 "
                "(use --precision fp32)")
    if device.type == "cuda":
        needed = {"bf16": (8, 0), "fp16": (7, 0)}[precision]
        if cuda_capability is None:
            cuda_capability = tuple(torch.cuda.get_device_capability(device))
        if tuple(cuda_capability) >= needed:
            return None
        have = ".".join(map(str, cuda_capability))
        return (f"--precision {precision}: expected a GPU of compute capability >= {needed[0]}.{needed[1]} for fast "
                f"{precision}, received {device} of compute capability {have} (use --precision "
                f"{'fp16' if precision == 'bf16' and tuple(cuda_capability) >= (7, 0) else 'fp32'})")
    return None


def _world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


class Backend:
    """Device, precision and distribution for a run.

    ``precision``: ``fp32``; ``bf16`` (autocast, no loss scaling); ``fp16`` (autocast with a
    gradient scaler). ``distributed``: ``auto`` joins a process group when launched by torchrun or
    accelerate (``WORLD_SIZE`` > 1), ``none`` never does.
    """

    def __init__(self, device: str = "auto", precision: Precision = "fp32",
                 distributed: Literal["auto", "none"] = "auto") -> None:
        if precision not in ("fp32", "bf16", "fp16"):
            raise ConfigError("precision", "'fp32', 'bf16' or 'fp16'", precision)
        if distributed not in ("auto", "none"):
            raise ConfigError("distributed", "'auto' or 'none'", distributed)
        self.precision: Precision = precision
        self._state = None
        if distributed == "auto" and _world_size() > 1:
            from accelerate import PartialState

            self._state = PartialState(cpu=device == "cpu")
            self.device = self._state.device if device == "auto" else pick_device(device)
        else:
            self.device = pick_device(device)
        if precision == "fp16" and self.device.type == "mps":
            raise ConfigError("precision", "fp32 or bf16 on mps", precision)
        slow = slow_precision(self.device, precision)
        if slow is not None and self.is_main:
            warnings.warn(slow, PrecisionWarning, stacklevel=2)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=precision == "fp16")

    # -- processes --------------------------------------------------------------------------------
    @property
    def world_size(self) -> int:
        """How many processes train together."""
        return self._state.num_processes if self._state is not None else 1

    @property
    def rank(self) -> int:
        """This process's index."""
        return self._state.process_index if self._state is not None else 0

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and prints."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every process."""
        if self._state is not None:
            self._state.wait_for_everyone()

    def wrap(self, model: nn.Module, find_unused_parameters: bool = False) -> nn.Module:
        """Move ``model`` to the device, and wrap it in DDP when several processes run.

        Under DDP every process starts from the main process's parameters and buffers, and the gradients of
        every parameter of ``model`` are averaged over processes in each backward pass through its forward.
        ``find_unused_parameters``: some parameters may get no gradient in a step (DDP then looks for them)."""
        model.to(self.device)
        if self.world_size > 1 and any(p.requires_grad for p in model.parameters()):
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            return nn.parallel.DistributedDataParallel(model, device_ids=device_ids,
                                                       find_unused_parameters=find_unused_parameters)
        return model

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over processes (identity for one process)."""
        if self.world_size > 1:
            tensor = tensor.clone()
            torch.distributed.all_reduce(tensor)
        return tensor

    # -- precision --------------------------------------------------------------------------------
    def autocast(self) -> contextlib.AbstractContextManager:
        """The autocast context for forward passes at this precision (a no-op for fp32)."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=_DTYPES[self.precision])

    def to_device(self, batch: Any) -> Any:
        """Move every tensor of a (nested) batch to the device; dicts, lists and tuples are rebuilt, the rest kept."""
        if isinstance(batch, torch.Tensor):
            return batch.to(self.device, non_blocking=True)
        if isinstance(batch, dict):
            return {k: self.to_device(v) for k, v in batch.items()}
        if isinstance(batch, list | tuple):
            return type(batch)(self.to_device(v) for v in batch)
        return batch

    def describe(self) -> dict:
        """A JSON-able summary for env.json."""
        return {"device": str(self.device), "precision": self.precision, "world_size": self.world_size}

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """Let the main process run the block first (e.g. to build a cache), then the others."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()
