"""Small pieces behind kd-vision's dataset caches: ``.npy`` bytes and integer checks (checksums and atomic
writes come from :mod:`kd_core.datacache`)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from kd_core.datacache import atomic_write, file_sha256, sha256_bytes  # noqa: F401 - re-exported
from kd_core.errors import ConfigError


def npy_bytes(array: np.ndarray) -> bytes:
    """``array`` serialised as a ``.npy`` file (no pickles)."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()



def check_int(name: str, value: Any, minimum: int) -> int:
    """``value`` as an int, or ``ConfigError`` naming ``name`` unless it is an integer ≥ ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ConfigError(name, f"an integer >= {minimum}", value)
    return int(value)
