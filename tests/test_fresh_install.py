"""A fresh venv with only kd-core and kd-vision (regular installs, not editable) works and stays small.

Slow (it installs torch into a new venv; minutes), so CI skips it: run with ``pytest -m slow``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 15 * 60
NOT_FOR_VISION = ("diffusers", "transformers", "torchaudio")


@pytest.mark.slow
def test_kd_vision_installs_alone_without_other_domains_libraries(tmp_path: Path) -> None:
    deadline = time.monotonic() + BUDGET_S
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}

    def run(*command: str | Path, cwd: Path = tmp_path) -> subprocess.CompletedProcess[str]:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"the fresh install took longer than {BUDGET_S} s")
        args = [str(part) for part in command]
        result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=left)
        assert result.returncode == 0, (
            f"{' '.join(args)} exited {result.returncode}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
        return result

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    run(
        python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "-c", "constraints/dev.txt", "packages/kd-core", "packages/kd-vision",
        cwd=ROOT,
    )  # fmt: skip

    helped = run(venv / "bin" / "kd-vision", "--help")
    assert "distill" in helped.stdout

    listed = run(python, "-m", "pip", "list", "--format=json", "--disable-pip-version-check")
    installed = {item["name"].lower().replace("_", "-"): item["version"] for item in json.loads(listed.stdout)}
    assert {"kd-core", "kd-vision", "torch", "torchvision"} <= set(installed), sorted(installed)
    leaked = sorted(name for name in NOT_FOR_VISION if name in installed)
    assert not leaked, f"installing kd-vision pulled in {leaked}"
    assert not any(name.startswith("kd-") and name not in ("kd-core", "kd-vision") for name in installed)

    imported = run(python, "-c", "import kd_core, kd_vision; print(kd_core.__file__); print(kd_vision.__file__)")
    for path in imported.stdout.split():
        assert Path(path).resolve().is_relative_to(venv.resolve()), f"imported from {path}, not from the fresh venv"
    run(python, "-m", "pip", "check", "--disable-pip-version-check")
