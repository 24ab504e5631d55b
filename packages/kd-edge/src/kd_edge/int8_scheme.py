"""Which INT8 scheme ONNX Runtime computes accurately on this CPU.

ONNX Runtime's default INT8 scheme is U8S8: uint8 activations times int8 weights. On x86-64 CPUs
without VNNI its AVX2 kernels multiply them with ``vpmaddubsw``, whose 16-bit intermediate sums
saturate; the outputs can be off by a fifth of their range (measured on an AVX2 machine: 19 % maximum
relative error on a 512-wide MLP, 0.2 % with U8U8). ONNX Runtime's quantization guide recommends
U8U8 (uint8 weights) or ``reduce_range`` (7-bit weights) on such CPUs. With VNNI (AVX512-VNNI or
AVX-VNNI) and on ARM the U8S8 kernels do not saturate, and U8S8 is the faster and usual choice.

``choose_scheme`` reads the CPU's flags (``/proc/cpuinfo`` on Linux) and picks:

- ``u8s8`` on x86-64 with VNNI, and on other architectures;
- ``u8u8`` on x86-64 without VNNI;
- ``u8s8`` with a ``validate`` reason where the flags cannot be read, so that the quantizer checks the
  result against FP32 and falls back to ``u8u8`` when it is off (see ``kd_edge.quantize``).
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

from kd_core.errors import ConfigError
from onnxruntime.quantization import QuantType

__all__ = ["SCHEMES", "VNNI_FLAGS", "Int8Scheme", "choose_scheme", "cpu_flags", "resolve_scheme"]

#: CPU flags (as Linux names them) that give ORT's U8S8 kernels non-saturating dot products.
VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
_X86 = {"x86_64", "amd64", "i386", "i686", "x86"}


@dataclass(frozen=True)
class Int8Scheme:
    """An INT8 scheme: activation and weight types, whether weights use 7 bits, and why it was chosen."""

    name: str
    activation_type: QuantType
    weight_type: QuantType
    reduce_range: bool
    reason: str = ""

    def because(self, reason: str) -> Int8Scheme:
        """The same scheme with ``reason`` recorded."""
        return Int8Scheme(self.name, self.activation_type, self.weight_type, self.reduce_range, reason)


#: The schemes by name.
SCHEMES: dict[str, Int8Scheme] = {
    "u8s8": Int8Scheme("u8s8", QuantType.QUInt8, QuantType.QInt8, False),
    "u8u8": Int8Scheme("u8u8", QuantType.QUInt8, QuantType.QUInt8, False),
    "u8s8-reduced": Int8Scheme("u8s8-reduced", QuantType.QUInt8, QuantType.QInt8, True),
}


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str] | None:
    """The CPU's feature flags from ``cpuinfo`` (Linux), or None where that file cannot be read."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return None


def choose_scheme(flags: frozenset[str] | set[str] | None = None, machine: str | None = None,
                  *, read_flags: bool = True) -> Int8Scheme:
    """The scheme ORT computes accurately on a CPU with ``flags`` and architecture ``machine``
    (both read from this machine when not given; ``read_flags=False`` treats missing flags as unknown)."""
    machine = (machine or platform.machine()).lower()
    if flags is None and read_flags:
        flags = cpu_flags()
    if machine not in _X86:
        return SCHEMES["u8s8"].because(f"{machine}: ORT's U8S8 kernels do not saturate on this architecture")
    if flags is None:
        return SCHEMES["u8s8"].because("x86-64 CPU flags unreadable: U8S8, validated against FP32")
    vnni = sorted(VNNI_FLAGS & set(flags))
    if vnni:
        return SCHEMES["u8s8"].because(f"x86-64 with {', '.join(vnni)}: U8S8 kernels exact")
    return SCHEMES["u8u8"].because("x86-64 without VNNI: ORT's U8S8 kernels saturate there, so U8U8")


def resolve_scheme(scheme: str | Int8Scheme = "auto") -> Int8Scheme:
    """``"auto"`` (``choose_scheme()``), a name in ``SCHEMES`` (forced), or an ``Int8Scheme`` as it is."""
    if isinstance(scheme, Int8Scheme):
        return scheme
    if scheme == "auto":
        return choose_scheme()
    if scheme not in SCHEMES:
        raise ConfigError("scheme", f"'auto' or one of {sorted(SCHEMES)}", scheme)
    return SCHEMES[scheme].because("forced")
