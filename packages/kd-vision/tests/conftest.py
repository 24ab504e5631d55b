"""Fixtures every kd-vision test module shares: one torch thread, and a private ``KD_DATA_HOME``."""

from __future__ import annotations

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
    """A private, empty ``KD_DATA_HOME`` (teacher and dataset caches go there)."""
    home = tmp_path / "kd-home"
    monkeypatch.setenv("KD_DATA_HOME", str(home))
    return home
