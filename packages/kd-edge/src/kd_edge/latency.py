"""Latency on real runtimes: PyTorch eager and ONNX Runtime models (FP32, INT8, mixed precision) timed side
by side in one run.

For every thread count and batch size, all candidates are warmed up, then timed *interleaved*: iteration ``i``
runs each candidate once, starting from a different one each time, so drift in machine load hits all of them
alike. Reported per candidate: p50 / p90 / p99 / mean ms per forward pass, throughput, size on disk and memory.

Memory (Linux only, else ``None``): ``load_memory_mb`` is the growth of the process's resident set (RSS) while
an ONNX Runtime session is created (for a PyTorch module: the bytes of its parameters and buffers);
``peak_memory_mb`` is how far the peak RSS (``VmHWM``, reset through ``/proc/self/clear_refs`` before each
candidate) rises above the RSS before that candidate's warm-up runs: the working memory of a forward pass at
that batch size. Python's ``tracemalloc`` is not used: it cannot see ONNX Runtime's native allocations.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from kd_core.errors import ConfigError
from safetensors.torch import save as safetensors_bytes
from torch import nn

from kd_edge.export import check_model_path, file_size, onnx_session

__all__ = ["LatencyRow", "benchmark", "percentile", "rows_to_json"]


@dataclass
class LatencyRow:
    """One candidate at one batch size and thread count."""

    name: str
    runtime: str
    batch_size: int
    threads: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    samples_per_s: float
    iterations: int
    warmup: int
    size_bytes: int
    load_memory_mb: float | None
    peak_memory_mb: float | None


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default) of ``values``."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def rows_to_json(rows: Sequence[LatencyRow]) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts."""
    return [asdict(row) for row in rows]


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # 5: reset the peak RSS (VmHWM) to the current RSS
        return True
    except OSError:
        return False


class _Runner:
    """One candidate: a callable on a batch, how big it is, and what loading it cost."""

    def __init__(self, name: str, model: nn.Module | str | os.PathLike[str], threads: int) -> None:
        self.name = name
        if isinstance(model, nn.Module):
            self.runtime = "pytorch"
            self.model = model.eval()
            state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
            self.size_bytes = len(safetensors_bytes(state)) if state else 0
            self.load_mb: float | None = sum(v.numel() * v.element_size() for v in state.values()) / 2 ** 20
            self.call: Callable[[Any], Any] = self._torch
        else:
            self.runtime = "onnxruntime"
            path = check_model_path(model, f"candidates[{name!r}]")
            self.size_bytes = file_size(path)
            before = _status_kb("VmRSS")
            self.session = onnx_session(path, threads=threads)
            after = _status_kb("VmRSS")
            self.load_mb = None if before is None or after is None else max(0, after - before) / 1024
            self.input_name = self.session.get_inputs()[0].name
            self.call = self._ort

    def _torch(self, batch: tuple[torch.Tensor, np.ndarray]) -> Any:
        with torch.inference_mode():
            return self.model(batch[0])

    def _ort(self, batch: tuple[torch.Tensor, np.ndarray]) -> Any:
        return self.session.run(None, {self.input_name: batch[1]})


def _positive_ints(values: Any, argument: str) -> list[int]:
    values = [values] if isinstance(values, int) else values
    if (not isinstance(values, Sequence) or not values
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values)):
        raise ConfigError(argument, "one or more integers >= 1", values)
    return list(values)


def benchmark(candidates: Mapping[str, nn.Module | str | os.PathLike[str]], input_shape: Sequence[int], *,
              batch_sizes: Sequence[int] = (1, 32), threads: Sequence[int] = (1,), warmup: int = 10,
              iterations: int = 50, seed: int = 0,
              on_step: Callable[[str], None] | None = None) -> list[LatencyRow]:
    """Time every candidate (a PyTorch module, or the path of an ``.onnx`` file run by ONNX Runtime on the CPU)
    on random inputs of shape ``[batch, *input_shape]``, interleaved (see the module doc).

    ``threads`` sets both ``torch.set_num_threads`` and ONNX Runtime's intra-op threads (restored afterwards).
    ``on_step`` is called with a short label after each (threads, batch size) block, for progress bars.
    """
    if not isinstance(candidates, Mapping) or not candidates:
        raise ConfigError("candidates", "a non-empty dict of name -> nn.Module or .onnx path", candidates)
    for name, model in candidates.items():
        if not isinstance(model, nn.Module):
            check_model_path(model, f"candidates[{name!r}]")
    shape = _positive_ints(list(input_shape) if isinstance(input_shape, Sequence) else input_shape, "input_shape")
    batch_sizes = _positive_ints(batch_sizes, "batch_sizes")
    threads = _positive_ints(threads, "threads")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ConfigError("warmup", "an integer >= 0", warmup)
    iterations = _positive_ints(iterations, "iterations")[0]
    generator = torch.Generator().manual_seed(seed)
    rows: list[LatencyRow] = []
    previous_threads = torch.get_num_threads()
    try:
        for count in threads:
            torch.set_num_threads(count)
            runners = [_Runner(name, model, count) for name, model in candidates.items()]
            for batch_size in batch_sizes:
                x = torch.randn(batch_size, *shape, generator=generator)
                batch = (x, x.numpy())
                peaks: dict[str, float | None] = {}
                for runner in runners:
                    resettable = _reset_peak()
                    before = _status_kb("VmRSS")
                    for _ in range(max(warmup, 1)):
                        runner.call(batch)
                    peak = _status_kb("VmHWM")
                    peaks[runner.name] = (max(0, peak - before) / 1024
                                          if resettable and peak is not None and before is not None else None)
                times: dict[str, list[float]] = {runner.name: [] for runner in runners}
                for i in range(iterations):
                    for j in range(len(runners)):
                        runner = runners[(i + j) % len(runners)]
                        start = time.perf_counter()
                        runner.call(batch)
                        times[runner.name].append((time.perf_counter() - start) * 1000.0)
                for runner in runners:
                    values = times[runner.name]
                    p50 = percentile(values, 50)
                    rows.append(LatencyRow(
                        name=runner.name, runtime=runner.runtime, batch_size=batch_size, threads=count, p50_ms=p50,
                        p90_ms=percentile(values, 90), p99_ms=percentile(values, 99),
                        mean_ms=float(np.mean(values)), samples_per_s=batch_size / (p50 / 1000.0),
                        iterations=iterations, warmup=warmup, size_bytes=runner.size_bytes,
                        load_memory_mb=runner.load_mb, peak_memory_mb=peaks[runner.name]))
                if on_step is not None:
                    on_step(f"threads {count}, batch {batch_size}")
    finally:
        torch.set_num_threads(previous_threads)
    return rows

