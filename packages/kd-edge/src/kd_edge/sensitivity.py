"""Per-layer INT8 sensitivity and selective mixed precision.

After B.-K. Kim et al., "A Unified Compression Framework for Efficient Speech-Driven Talking-Face Generation",
MLSys 2023 Workshop on On-Device Intelligence, arXiv:2304.00471: FP16 for the layers INT8 hurts most, INT8 for
the rest.

``layer_sensitivity`` quantizes one compute layer at a time (static QDQ INT8, every other layer left in FP32),
runs the evaluation inputs through ONNX Runtime and scores the output against the FP32 model's: SQNR in dB
(``10·log10(Σ ref² / Σ (ref − q)²)``, lower is more sensitive) and, given labels, the task-metric delta.
Activation ranges are calibrated once and reused for every layer. ``mixed_precision`` then writes a QDQ model
with the ``k`` most sensitive layers kept in FP16 (the paper's choice and the default: FP16 weights, the layer
wrapped in casts) or, with ``keep="fp32"``, in FP32 (``nodes_to_exclude``), the rest INT8.

ONNX Runtime's CPU provider on x86-64 has no FP16 ``Conv``/``ConvTranspose``/``Gemm`` kernel: it wraps an FP16
layer in casts to float32 and, for a layer wrapped as here, removes the cast pairs again, so the layer runs as
FP32 with FP16-rounded weights (upcast once at load; measured with ORT 1.32). FP16 kept layers then cost what
FP32 kept layers cost and their outputs are those of FP32 compute with FP16 weights; the file stores them at half
the size. Runtimes with FP16 kernels (GPU execution providers, NPUs, some ARM64 CPU builds) run them in FP16.
``kd_edge.quantize.compute_precisions`` tells which kernels a model really ran.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from kd_core.errors import ConfigError, KDError
from kd_core.metrics import accuracy
from onnx import TensorProto, helper, numpy_helper

from kd_edge.export import check_model_path, file_size, onnx_session, run_onnx
from kd_edge.quantize import (
    COMPUTE_OPS,
    QuantResult,
    _preprocess,
    _summarise,
    compute_layers,
    quantize_static_int8,
    replace_nodes,
)

__all__ = ["LayerSensitivity", "SensitivityReport", "layer_sensitivity", "mixed_precision", "sqnr_db"]

MAX_SQNR_DB = 300.0  # reported when the quantized output equals the reference exactly


def sqnr_db(reference: np.ndarray, quantized: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB of ``quantized`` against ``reference`` (capped at 300 dB)."""
    reference = np.asarray(reference, dtype=np.float64)
    noise = float(np.sum((reference - np.asarray(quantized, dtype=np.float64)) ** 2))
    signal = float(np.sum(reference ** 2))
    if noise == 0.0:
        return MAX_SQNR_DB
    if signal == 0.0:
        return -MAX_SQNR_DB
    return min(MAX_SQNR_DB, 10.0 * math.log10(signal / noise))


@dataclass
class LayerSensitivity:
    """One layer quantized alone: its node, op type and PyTorch module, output SQNR (dB), task metric and delta
    against FP32 (``None`` without labels), and its rank (1 = most sensitive)."""

    node: str
    op_type: str
    module: str
    sqnr_db: float
    metric: float | None
    metric_delta: float | None
    rank: int = 0


@dataclass
class SensitivityReport:
    """Every layer's sensitivity, most sensitive first, with the FP32 and all-INT8 references."""

    layers: list[LayerSensitivity]
    rank_by: str
    fp32_metric: float | None
    all_int8_sqnr_db: float
    all_int8_metric: float | None
    metric_name: str | None = None
    samples: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ranking(self) -> list[str]:
        """Node names, most sensitive first."""
        return [layer.node for layer in self.layers]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def _score(metric: Callable[[torch.Tensor, torch.Tensor], float], outputs: np.ndarray,
           labels: torch.Tensor | None) -> float | None:
    return None if labels is None else float(metric(torch.from_numpy(outputs).float(), labels))


def layer_sensitivity(model_path: str | os.PathLike[str], calibration: Any, inputs: torch.Tensor,
                      labels: torch.Tensor | None = None, *, layers: Sequence[str] | None = None,
                      op_types: Sequence[str] = COMPUTE_OPS, rank_by: str = "sqnr",
                      metric: Callable[[torch.Tensor, torch.Tensor], float] | None = None,
                      per_channel: bool = True, on_layer: Callable[[str], None] | None = None) -> SensitivityReport:
    """Rank the compute layers of the FP32 ONNX model at ``model_path`` by INT8 sensitivity.

    ``calibration``: samples for activation ranges (see ``quantize.CalibrationReader``); ``inputs`` (and
    ``labels``): the evaluation set. ``layers``: node names to score (default: every ``op_types`` node).
    ``rank_by``: ``"sqnr"`` (lowest SQNR first) or ``"metric"`` (largest metric drop first; needs labels, ties
    broken by SQNR). ``on_layer`` is called with each node name once it is scored (for progress bars).
    """
    src = check_model_path(model_path)
    if rank_by not in ("sqnr", "metric"):
        raise ConfigError("rank_by", "'sqnr' or 'metric'", rank_by)
    if rank_by == "metric" and labels is None:
        raise ConfigError("labels", "labels when rank_by='metric'", None)
    if not isinstance(inputs, torch.Tensor) or inputs.dim() == 0 or len(inputs) == 0:
        raise ConfigError("inputs", "a non-empty tensor of evaluation inputs [N, ...]",
                          tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__)
    if labels is not None and (not isinstance(labels, torch.Tensor) or len(labels) != len(inputs)):
        raise ConfigError("labels", f"a tensor of {len(inputs)} labels", type(labels).__name__)
    score = metric or accuracy
    with tempfile.TemporaryDirectory(prefix="kd-edge-sens-") as work:
        prepared = _preprocess(src, work)
        available = compute_layers(onnx.load(str(prepared)), op_types)
        by_node = {layer["node"]: layer for layer in available}
        chosen = list(layers) if layers is not None else list(by_node)
        unknown = [name for name in chosen if name not in by_node]
        if unknown or not chosen:
            raise ConfigError("layers", f"names of {'/'.join(op_types)} nodes of the model {sorted(by_node)}",
                              unknown or chosen)
        cache = Path(work) / "calibration.json"
        reference = run_onnx(onnx_session(prepared), inputs)
        fp32_metric = _score(score, reference, labels)

        def evaluate(path: Path) -> tuple[float, float | None]:
            out = run_onnx(onnx_session(path), inputs)
            return sqnr_db(reference, out), _score(score, out, labels)

        everything = Path(work) / "all.onnx"
        quantize_static_int8(prepared, everything, calibration, op_types=op_types, per_channel=per_channel,
                             calibration_cache=cache, preprocess=False)
        all_sqnr, all_metric = evaluate(everything)
        rows = []
        for name in chosen:
            one = Path(work) / "one.onnx"
            quantize_static_int8(prepared, one, None, nodes_to_quantize=[name], per_channel=per_channel,
                                 calibration_cache=cache, preprocess=False)
            sqnr, value = evaluate(one)
            layer = by_node[name]
            rows.append(LayerSensitivity(node=name, op_type=layer["op_type"], module=layer["module"], sqnr_db=sqnr,
                                         metric=value, metric_delta=None if value is None else value - fp32_metric))
            if on_layer is not None:
                on_layer(name)
    if rank_by == "metric":
        rows.sort(key=lambda r: (r.metric_delta, r.sqnr_db))
    else:
        rows.sort(key=lambda r: r.sqnr_db)
    for i, row in enumerate(rows, start=1):
        row.rank = i
    return SensitivityReport(layers=rows, rank_by=rank_by, fp32_metric=fp32_metric, all_int8_sqnr_db=all_sqnr,
                             all_int8_metric=all_metric, metric_name=getattr(score, "__name__", "metric")
                             if labels is not None else None, samples=len(inputs))


def _nodes_to_fp16(model: onnx.ModelProto, nodes: Sequence[str]) -> onnx.ModelProto:
    """Run ``nodes`` in FP16: their float32 initializers become FP16 copies, activation inputs are cast to FP16
    and outputs back to float32, so the rest of the (QDQ) graph is untouched. ``onnxruntime``'s float16
    converter is not used here: given a block list on a QDQ graph it casts every tensor between blocked nodes
    back and forth and leaves the chosen nodes in float32."""
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    wanted = set(nodes)
    new_nodes = []
    for node in graph.node:
        if node.name not in wanted:
            new_nodes.append(node)
            continue
        for i, name in enumerate(node.input):
            if not name:
                continue
            if name in initializers and initializers[name].data_type == TensorProto.FLOAT:
                half = f"{name}_fp16"
                if half not in initializers:
                    array = numpy_helper.to_array(initializers[name]).astype(np.float16)
                    initializers[half] = numpy_helper.from_array(array, half)
                    graph.initializer.append(initializers[half])
                node.input[i] = half
            elif name not in initializers:
                cast = f"{node.name}_in{i}_fp16"
                new_nodes.append(helper.make_node("Cast", [name], [cast], to=TensorProto.FLOAT16,
                                                  name=f"{cast}_cast"))
                node.input[i] = cast
        outputs = list(node.output)
        for i, name in enumerate(outputs):
            node.output[i] = f"{name}_fp16"
        new_nodes.append(node)
        for name in outputs:
            new_nodes.append(helper.make_node("Cast", [f"{name}_fp16"], [name], to=TensorProto.FLOAT,
                                              name=f"{name}_to_fp32"))
    replace_nodes(graph, new_nodes)
    return model


def mixed_precision(model_path: str | os.PathLike[str], ranking: SensitivityReport | Sequence[str], k: int,
                    out_path: str | os.PathLike[str], calibration: Any, *, keep: str = "fp16",
                    per_channel: bool = True, op_types: Sequence[str] = COMPUTE_OPS) -> QuantResult:
    """A QDQ model with the ``k`` most sensitive layers of ``ranking`` kept in ``keep`` precision and every other
    layer INT8 (static, calibrated on ``calibration``). ``k = 0`` is all-INT8.

    ``keep``: ``"fp16"`` (default, as in Kim et al.): the kept layers' float weights are stored as float16 and
    each kept layer is wrapped in casts (float32 in and out; ``mode`` ``"mixed-int8-fp16"``); ``"fp32"``: they
    are left out of quantization as they are (``mode`` ``"mixed-int8-fp32"``). See the module doc for what ONNX
    Runtime's CPU provider does with FP16 layers. ``op_types``: the op types quantized (``COMPUTE_OPS``, or
    ``INT8_KERNEL_OPS`` to leave ops without an integer CPU kernel, such as ConvTranspose, in FP32).
    """
    src = check_model_path(model_path)
    order = ranking.ranking if isinstance(ranking, SensitivityReport) else list(ranking)
    if isinstance(ranking, str) or not all(isinstance(name, str) for name in order):
        raise ConfigError("ranking", "a SensitivityReport or a list of node names", type(ranking).__name__)
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= len(order):
        raise ConfigError("k", f"an integer in [0, {len(order)}] (layers in the ranking)", k)
    if keep not in ("fp32", "fp16"):
        raise ConfigError("keep", "'fp32' or 'fp16'", keep)
    kept = order[:k]
    result = quantize_static_int8(src, out_path, calibration, nodes_to_exclude=kept, per_channel=per_channel,
                                  op_types=op_types)
    leaked = sorted(set(kept) & set(result.quantized_layers))
    names = {n.name for n in onnx.load(str(result.path)).graph.node}
    if leaked or not set(kept) <= names:
        raise KDError("ranking", "node names that survive ORT pre-processing unchanged",
                      leaked or sorted(set(kept) - names), hint="rank the layers with layer_sensitivity first")
    if keep == "fp16" and kept:
        model = _nodes_to_fp16(onnx.load(str(result.path)), kept)
        onnx.save(model, str(result.path))
        converted = _summarise("mixed-int8-fp16", Path(result.path), src, excluded=kept)
        # the scheme carries over; the error measured before the FP16 conversion does not describe this model
        converted.scheme, converted.scheme_reason = result.scheme, result.scheme_reason
        converted.schemes_tried = result.schemes_tried
        result = converted
    else:
        result.mode = "mixed-int8-fp32" if kept else "static-int8"
    result.size_bytes = file_size(result.path)
    return result
