"""Fixtures kd-generative's tests share: one torch thread, a private ``KD_DATA_HOME``, and opencv-doc's data."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny models run fastest on one CPU thread (two threads on a shared 2-core machine are many times slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private, empty ``KD_DATA_HOME`` (dataset and teacher caches go there)."""
    home = tmp_path / "kd-home"
    monkeypatch.setenv("KD_DATA_HOME", str(home))
    return home


@pytest.fixture
def opencv_doc(data_home: Path) -> Path:
    """opencv-doc's sample data folder. Skipped when the Debian package is missing, except on CI (``CI=true``),
    where a missing package fails the test (tools/apt-packages.txt lists it)."""
    from kd_core.errors import DataError
    from kd_generative.data.photos import opencv_data_dir

    try:
        return opencv_data_dir()
    except DataError as error:
        if os.environ.get("CI") == "true":
            pytest.fail(f"opencv-doc is missing on CI: {error}")
        pytest.skip(f"apt-get install opencv-doc ({error})")


@pytest.fixture(scope="module")
def speech_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private ``KD_DATA_HOME`` shared by one module's talking-face tests, once flite, espeak-ng and pocketsphinx
    are known to be there (skipped without them, except on CI, where a missing one fails)."""
    missing = [t for t in ("flite", "espeak-ng") if shutil.which(t) is None]
    try:
        import pocketsphinx  # noqa: F401
    except ImportError:
        missing.append("pocketsphinx (pip)")
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"missing on CI: {missing}")
        pytest.skip(f"install {missing}")
    path = tmp_path_factory.mktemp("kd-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KD_DATA_HOME", str(path))
        yield path
