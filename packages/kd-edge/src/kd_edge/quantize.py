"""INT8 and FP16 through ONNX Runtime's own tools (no hand-written kernels).

- ``quantize_dynamic_int8``: weights INT8, activations quantized at run time (``quantize_dynamic``). ORT's
  dynamic path quantizes ``MatMul`` and ``Conv`` but not ``Gemm``, which is what ``nn.Linear`` exports to, so
  each plain ``Gemm`` is first rewritten as ``MatMul`` + ``Add`` (same maths) to have it quantized too.
  Convolutions are left out by default: ORT's dynamic ``ConvInteger`` runs 3-7x *slower* than FP32 ``Conv`` on
  x86 CPUs (measured here); quantize convolutional models with the static path.
- ``quantize_static_int8``: QDQ format, per-channel INT8 weights, UINT8 activations with ranges from a
  calibration set fed through :class:`CalibrationReader` (``quantize_static``); Conv, ConvTranspose, Gemm and
  MatMul all quantized (by default exactly these compute ops, so that a layer kept in float also keeps a float
  input whenever its producer is not itself a compute layer).
- ``convert_fp16``: ``onnxruntime.transformers.float16`` with float32 inputs and outputs kept.
- ``compute_precisions``: which element types ONNX Runtime's compute kernels really ran in. On x86-64 its CPU
  provider has no FP16 Conv/ConvTranspose/Gemm kernels (measured, ORT 1.32): FP16 layers run as FP32 (see
  ``kd_edge.sensitivity``), and a whole-model FP16 file runs *slower* than FP32 there (casts between layers).

Both INT8 paths take a ``scheme`` (``kd_edge.int8_scheme``): ``"auto"`` picks the activation/weight types
that ONNX Runtime computes accurately on this CPU (U8U8 on x86-64 without VNNI, where the U8S8 kernels
saturate; U8S8 elsewhere). Given data (the calibration set, or ``validation=`` for the dynamic path), the
quantized model is checked against FP32 on it; under ``"auto"``, a U8S8 model whose outputs are off by more
than ``tolerance`` of the FP32 output range is redone in U8U8, and the better of the two kept. The choice,
its reason and every error measured are recorded in the ``QuantResult``.

Each returns a :class:`QuantResult` with the size on disk next to the source model's.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from kd_core.errors import ConfigError
from onnx import helper, numpy_helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    quant_pre_process,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.transformers.float16 import convert_float_to_float16

from kd_edge.export import check_model_path, file_size, node_module_paths, onnx_session, run_onnx
from kd_edge.int8_scheme import SCHEMES, Int8Scheme, resolve_scheme

__all__ = ["COMPUTE_OPS", "FALLBACK_TOLERANCE", "INT8_KERNEL_OPS", "INT8_OPS", "CalibrationReader", "QuantResult",
           "compute_layers", "compute_precisions", "convert_fp16", "gemm_to_matmul", "quantize_dynamic_int8",
           "quantize_static_int8", "relative_error"]

#: The op types that carry weights and compute: what "a layer" means for quantization and sensitivity.
COMPUTE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
#: The compute op types ONNX Runtime's CPU provider runs as integer kernels (QLinearConv, QGemm, QLinearMatMul or
#: MatMulInteger). It has no integer ConvTranspose: a QDQ ConvTranspose runs as dequantize -> FP32 ConvTranspose ->
#: quantize, which costs time and precision and saves nothing (measured on a base-64 U-Net: all-INT8 ran at
#: 0.54-0.61x FP32, INT8 on its Convs only at 1.18x; ``tools/bench/generative_precision.py``). Quantize these ops for
#: CPU inference; quantize ``COMPUTE_OPS`` for runtimes with INT8 ConvTranspose (TensorRT reads the QDQ graph).
INT8_KERNEL_OPS = ("Conv", "Gemm", "MatMul")
#: ``--int8-ops`` choices: every compute layer, or the ones with an integer kernel on ORT's CPU provider.
INT8_OPS = {"all": COMPUTE_OPS, "kernels": INT8_KERNEL_OPS}
#: Kernel names (ONNX Runtime's profiler) that do a compute layer's work, fused and integer forms included.
_KERNEL_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul", "FusedConv", "FusedGemm", "FusedMatMul", "QLinearConv",
               "QLinearMatMul", "ConvInteger", "MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat",
               "QGemm"}
_INTEGER_OPS = {"MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul", "QLinearConv", "QLinearMatMul",
                "MatMulIntegerToFloat"}
#: Under ``scheme="auto"``: a U8S8 model off by more than this share of the FP32 output range is redone in U8U8.
FALLBACK_TOLERANCE = 0.05
#: How many data samples the FP32 check runs on.
_CHECK_SAMPLES = 256
_CALIBRATION_METHODS = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                        "percentile": CalibrationMethod.Percentile}

logging.getLogger("onnxruntime.quantization").setLevel(logging.ERROR)


@dataclass
class QuantResult:
    """A quantized / converted model: where it is, its size against the source, and what was quantized.

    ``quantized_layers``: compute nodes (Conv/Gemm/MatMul...) that now take INT8 weights; ``excluded``: nodes
    left in float on purpose; ``op_counts``: op type -> count in the written graph. INT8 results also carry
    the ``scheme`` used (``u8s8``, ``u8u8`` or ``u8s8-reduced``), why (``scheme_reason``), its maximum output
    error relative to the FP32 output range on the check data (``relative_error``; None without data) and
    every scheme tried with its error (``schemes_tried``).
    """

    mode: str
    path: str
    source_path: str
    size_bytes: int
    source_size_bytes: int
    quantized_layers: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    op_counts: dict[str, int] = field(default_factory=dict)
    scheme: str = ""
    scheme_reason: str = ""
    relative_error: float | None = None
    schemes_tried: dict[str, float] = field(default_factory=dict)

    @property
    def size_ratio(self) -> float:
        """Size on disk relative to the source model."""
        return self.size_bytes / self.source_size_bytes


def compute_layers(model: onnx.ModelProto | str | os.PathLike[str],
                   op_types: Sequence[str] = COMPUTE_OPS) -> list[dict[str, str]]:
    """The graph's compute layers in order: ``{"node", "op_type", "module"}`` (module: the PyTorch module path
    when the dynamo exporter recorded it, else the node name)."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(check_model_path(model)))
    modules = node_module_paths(model)
    return [{"node": n.name, "op_type": n.op_type, "module": modules.get(n.name, n.name)}
            for n in model.graph.node if n.op_type in op_types]


class CalibrationReader(CalibrationDataReader):
    """Feeds calibration batches to ORT's calibrator.

    ``data``: a tensor or array ``[N, ...]``, or an iterable (a list, a DataLoader, a Dataset) of tensors,
    arrays, ``(input, label)`` pairs or dicts holding ``"input"``. Everything is materialised up front as
    float32 batches of ``batch_size``, so an empty set is refused before any work starts.
    """

    def __init__(self, data: Any, input_name: str = "input", batch_size: int = 32) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError("batch_size", "an integer >= 1", batch_size)
        samples = _as_array(data)
        self.input_name = input_name
        self.batches = [samples[i:i + batch_size] for i in range(0, len(samples), batch_size)]
        self.samples = len(samples)
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next batch as ``{input_name: array}``, or ``None`` at the end."""
        if self._next >= len(self.batches):
            return None
        self._next += 1
        return {self.input_name: self.batches[self._next - 1]}

    def rewind(self) -> None:
        """Start again from the first batch."""
        self._next = 0


def _item_input(item: Any) -> np.ndarray:
    if isinstance(item, dict):
        if "input" not in item:
            raise ConfigError("calibration", "dict items holding an 'input' entry", sorted(item))
        item = item["input"]
    elif isinstance(item, tuple | list) and item and not isinstance(item[0], int | float):
        item = item[0]
    if hasattr(item, "detach"):
        item = item.detach().cpu().numpy()
    return np.asarray(item, dtype=np.float32)


def _as_array(data: Any) -> np.ndarray:
    """Calibration data as one float32 array ``[N, ...]``; ``ConfigError`` naming ``calibration`` if empty."""
    if data is None:
        raise ConfigError("calibration", "calibration samples (a tensor [N, ...] or an iterable of batches)", None)
    if hasattr(data, "detach") or isinstance(data, np.ndarray):
        array = _item_input(data)
        if array.ndim == 0 or len(array) == 0:
            raise ConfigError("calibration", "at least one calibration sample", f"shape {array.shape}")
        return array
    if not isinstance(data, Iterable) and not hasattr(data, "__getitem__"):
        raise ConfigError("calibration", "a tensor [N, ...] or an iterable of batches", type(data).__name__)
    parts: list[np.ndarray] = []
    is_dataset = hasattr(data, "__len__") and hasattr(data, "__getitem__") and not isinstance(data, list | tuple)
    items = (data[i] for i in range(len(data))) if is_dataset else iter(data)
    for item in items:
        array = _item_input(item)
        parts.append(array[None] if is_dataset else array)
    if not parts or sum(len(p) for p in parts) == 0:
        raise ConfigError("calibration", "at least one calibration sample", "an empty set")
    return np.concatenate(parts, axis=0)


def _check_out(path: Any, argument: str = "out_path") -> Path:
    if not isinstance(path, str | os.PathLike) or not str(path).endswith(".onnx"):
        raise ConfigError(argument, "a file path ending in .onnx", path)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return Path(path)


def _preprocess(src: Path, workdir: str) -> Path:
    """ORT's recommended pre-processing (symbolic shape inference, graph optimisation); the model itself if
    pre-processing fails on it."""
    out = Path(workdir) / "preprocessed.onnx"
    try:
        quant_pre_process(str(src), str(out))
    except Exception:  # pre-processing is an optimisation, never a requirement
        return src
    return out


def _summarise(mode: str, out: Path, src: Path, excluded: Sequence[str] = ()) -> QuantResult:
    model = onnx.load(str(out))
    producers = {o: n for n in model.graph.node for o in n.output}
    quantized = []
    for node in model.graph.node:
        if node.op_type in _INTEGER_OPS:
            quantized.append(node.name)
        elif node.op_type in COMPUTE_OPS and len(node.input) > 1:
            weight = producers.get(node.input[1])
            if weight is not None and weight.op_type == "DequantizeLinear":
                quantized.append(node.name)
    return QuantResult(mode=mode, path=str(out), source_path=str(src), size_bytes=file_size(out),
                       source_size_bytes=file_size(src), quantized_layers=quantized, excluded=list(excluded),
                       op_counts=dict(Counter(n.op_type for n in model.graph.node)))


def relative_error(reference_path: str | os.PathLike[str], path: str | os.PathLike[str], inputs: np.ndarray) -> float:
    """Maximum absolute difference between the first outputs of two models over ``inputs``, relative to the
    reference's largest absolute output."""
    ref = run_onnx(onnx_session(reference_path), inputs)
    out = run_onnx(onnx_session(path), inputs)
    return float(np.abs(ref - out).max() / max(float(np.abs(ref).max()), 1e-12))


def _with_scheme(quantize_once: Any, src: Path, out: Path, scheme: str | Int8Scheme, check: np.ndarray | None,
                 tolerance: float) -> tuple[Int8Scheme, float | None, dict[str, float]]:
    """Quantize to ``out`` with ``scheme`` (``quantize_once(scheme, path)``); with check data, measure the error
    against FP32 and, under ``"auto"``, redo a U8S8 model that is off by more than ``tolerance`` in U8U8,
    keeping the better. Returns the scheme kept, its error and every error measured."""
    if not (isinstance(tolerance, int | float) and not isinstance(tolerance, bool) and tolerance >= 0):
        raise ConfigError("tolerance", "a number >= 0 (share of the FP32 output range)", tolerance)
    chosen = resolve_scheme(scheme)
    quantize_once(chosen, out)
    if check is None:
        return chosen, None, {}
    tried = {chosen.name: relative_error(src, out, check)}
    if scheme == "auto" and chosen.name != "u8u8" and tried[chosen.name] > tolerance:
        fallback = SCHEMES["u8u8"]
        with tempfile.TemporaryDirectory(prefix="kd-edge-u8u8-") as work:
            retry = Path(work) / out.name
            quantize_once(fallback, retry)
            tried[fallback.name] = relative_error(src, retry, check)
            if tried[fallback.name] < tried[chosen.name]:
                os.replace(retry, out)
                chosen = fallback.because(
                    f"{chosen.name} was off by {tried[chosen.name]:.1%} of the FP32 output range on the check data "
                    f"(> {tolerance:.0%}); U8U8 {tried[fallback.name]:.1%}")
    return chosen, tried[chosen.name], tried


def _scheme_fields(result: QuantResult, scheme: Int8Scheme, error: float | None,
                   tried: dict[str, float]) -> QuantResult:
    result.scheme, result.scheme_reason, result.relative_error = scheme.name, scheme.reason, error
    result.schemes_tried = dict(tried)
    return result


def gemm_to_matmul(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrite every ``Gemm`` with a constant weight, ``alpha = beta = 1`` and no transposed input A as
    ``MatMul`` (weight transposed once, if ``transB``) followed by ``Add`` of the bias: the same function in
    ops that ORT's dynamic quantizer handles. Other Gemms are left as they are."""
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    nodes = []
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        plain = (node.op_type == "Gemm" and attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0
                 and not attrs.get("transA", 0) and node.input[1] in initializers)
        if not plain:
            nodes.append(node)
            continue
        weight = numpy_helper.to_array(initializers[node.input[1]])
        if attrs.get("transB", 0):
            weight = np.ascontiguousarray(weight.T)
        weight_name = f"{node.input[1]}_matmul"
        graph.initializer.append(numpy_helper.from_array(weight, weight_name))
        has_bias = len(node.input) > 2 and node.input[2]
        product = f"{node.output[0]}_matmul" if has_bias else node.output[0]
        nodes.append(helper.make_node("MatMul", [node.input[0], weight_name], [product], name=node.name))
        if has_bias:
            nodes.append(helper.make_node("Add", [product, node.input[2]], [node.output[0]],
                                          name=f"{node.name}_bias"))
    replace_nodes(graph, nodes)
    return model


def replace_nodes(graph: Any, nodes: list[Any]) -> None:
    """Put ``nodes`` in place of ``graph``'s nodes and drop the initializers no node reads any more."""
    del graph.node[:]
    graph.node.extend(nodes)
    used = {i for n in graph.node for i in n.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def quantize_dynamic_int8(model_path: str | os.PathLike[str], out_path: str | os.PathLike[str], *,
                          op_types: Sequence[str] = ("MatMul",), per_channel: bool = False,
                          scheme: str | Int8Scheme = "auto", validation: Any = None,
                          tolerance: float = FALLBACK_TOLERANCE) -> QuantResult:
    """Dynamic INT8: weights quantized offline, activations at run time; Gemm layers included (see module doc).

    ``scheme``: ``"auto"``, ``"u8s8"``, ``"u8u8"`` or ``"u8s8-reduced"`` (ORT's dynamic activations are always
    uint8; the scheme sets the weights). ``validation``: samples (as for calibration) to check the result against
    FP32 on, and, under ``"auto"``, to fall back to U8U8 when U8S8 is off by more than ``tolerance``.
    """
    src = check_model_path(model_path)
    out = _check_out(out_path)
    check = None if validation is None else _as_array(validation)[:_CHECK_SAMPLES]
    with tempfile.TemporaryDirectory(prefix="kd-edge-quant-") as work:
        prepared = _preprocess(src, work)
        rewritten = Path(work) / "matmul.onnx"
        onnx.save(gemm_to_matmul(onnx.load(str(prepared))), str(rewritten))

        def once(chosen: Int8Scheme, path: Path) -> None:
            quantize_dynamic(str(rewritten), str(path), op_types_to_quantize=list(op_types), per_channel=per_channel,
                             weight_type=chosen.weight_type, reduce_range=chosen.reduce_range)

        kept = _with_scheme(once, src, out, scheme, check, tolerance)
    return _scheme_fields(_summarise("dynamic-int8", out, src), *kept)


def quantize_static_int8(model_path: str | os.PathLike[str], out_path: str | os.PathLike[str], calibration: Any, *,
                         op_types: Sequence[str] | None = COMPUTE_OPS, nodes_to_quantize: Sequence[str] | None = None,
                         nodes_to_exclude: Sequence[str] = (), per_channel: bool = True,
                         calibrate_method: str = "minmax", calibration_cache: str | os.PathLike[str] | None = None,
                         preprocess: bool = True, batch_size: int = 32, scheme: str | Int8Scheme = "auto",
                         tolerance: float = FALLBACK_TOLERANCE) -> QuantResult:
    """Static INT8 in QDQ format: per-channel INT8 weights, UINT8 activations whose ranges come from
    ``calibration`` (see :class:`CalibrationReader`; an empty set raises ``ConfigError`` naming ``calibration``).

    ``op_types``: op types to quantize (default: the compute layers, ``COMPUTE_OPS``; ``None``: every op ORT's
    QDQ quantizer supports, which also quantizes the outputs of Add, Relu, pooling...); ``nodes_to_quantize`` /
    ``nodes_to_exclude``: restrict by node name. ``calibration_cache``: a JSON file of activation ranges,
    written on first use and read afterwards (calibration then runs once for many quantizations).
    ``scheme``/``tolerance``: see the module doc; the calibration samples are the check data.
    """
    src = check_model_path(model_path)
    out = _check_out(out_path)
    if calibrate_method not in _CALIBRATION_METHODS:
        raise ConfigError("calibrate_method", f"one of {sorted(_CALIBRATION_METHODS)}", calibrate_method)
    cached = calibration_cache is not None and Path(calibration_cache).is_file()
    input_name = onnx.load(str(src), load_external_data=False).graph.input[0].name
    reader = None if cached and calibration is None else CalibrationReader(calibration, input_name, batch_size)
    names = {n.name for n in onnx.load(str(src), load_external_data=False).graph.node}
    for argument, given in (("nodes_to_quantize", nodes_to_quantize or ()), ("nodes_to_exclude", nodes_to_exclude)):
        unknown = sorted(set(given) - names)
        if unknown:
            raise ConfigError(argument, "names of nodes in the model", unknown)
    check = None if reader is None else np.concatenate(reader.batches)[:_CHECK_SAMPLES]
    with tempfile.TemporaryDirectory(prefix="kd-edge-quant-") as work:
        prepared = _preprocess(src, work) if preprocess else src

        def once(chosen: Int8Scheme, path: Path) -> None:
            if reader is not None:
                reader.rewind()
            quantize_static(str(prepared), str(path), reader, quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=list(op_types) if op_types else None, per_channel=per_channel,
                            activation_type=chosen.activation_type, weight_type=chosen.weight_type,
                            reduce_range=chosen.reduce_range,
                            nodes_to_quantize=list(nodes_to_quantize) if nodes_to_quantize else None,
                            nodes_to_exclude=list(nodes_to_exclude) or None,
                            calibrate_method=_CALIBRATION_METHODS[calibrate_method],
                            calibration_cache_path=str(calibration_cache) if calibration_cache else None)

        kept = _with_scheme(once, src, out, scheme, check, tolerance)
    return _scheme_fields(_summarise("static-int8", out, src, excluded=nodes_to_exclude), *kept)


def convert_fp16(model_path: str | os.PathLike[str], out_path: str | os.PathLike[str], *,
                 keep_nodes: Sequence[str] = ()) -> QuantResult:
    """FP16 weights and compute, float32 inputs and outputs; ``keep_nodes`` stay in float32."""
    src = check_model_path(model_path)
    out = _check_out(out_path)
    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True,
                                     node_block_list=list(keep_nodes) or None)
    onnx.save(model, str(out))
    return _summarise("fp16", out, src, excluded=keep_nodes)


def compute_precisions(model_path: str | os.PathLike[str], inputs: Any, threads: int = 1) -> dict[str, int]:
    """How many compute kernels (Conv, ConvTranspose, Gemm, MatMul and their fused or integer forms) ONNX
    Runtime's CPU provider ran per element type of their first input, over one forward pass of ``inputs`` (one
    batch, as for calibration): e.g. ``{"float": 6, "uint8": 4}``. A model whose file holds FP16 layers but
    whose count shows no ``"float16"`` ran them in FP32 behind casts (no FP16 kernel on this CPU).
    """
    import json

    import onnxruntime as ort

    src = check_model_path(model_path)
    try:
        array = _as_array(inputs)
    except ConfigError as err:
        raise ConfigError("inputs", err.expected, err.received) from None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError("threads", "an integer >= 1", threads)
    with tempfile.TemporaryDirectory(prefix="kd-edge-profile-") as work:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = threads
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(work) / "profile")
        session = ort.InferenceSession(str(src), sess_options=options, providers=["CPUExecutionProvider"])
        session.run(None, {session.get_inputs()[0].name: array})
        events = json.loads(Path(session.end_profiling()).read_text())
    counts: Counter[str] = Counter()
    for event in events:
        args = event.get("args", {})
        if event.get("cat") != "Node" or args.get("op_name") not in _KERNEL_OPS:
            continue
        if not event.get("name", "").endswith("_kernel_time"):
            continue
        shapes = args.get("input_type_shape") or [{}]
        counts[next(iter(shapes[0]), "unknown")] += 1
    return dict(counts)
