"""The README's Python example ("Using it", the ```python block) runs exactly as printed."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    """The first ```python block of the README's "Using it" section, as printed."""
    text = README.read_text()
    section = text.split("\n## Using it\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```python\n(.*?)^```$", section, flags=re.DOTALL | re.MULTILINE)
    assert blocks, "README.md's 'Using it' section has no ```python block"
    return blocks[0]


def test_readme_python_example_runs_as_printed(tmp_path: Path) -> None:
    code = readme_example()
    assert "Distiller" in code and ".fit(" in code
    script = tmp_path / "example.py"
    script.write_text(code)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run([sys.executable, str(script)], cwd=work, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    # what the example promises: a best validation accuracy, and the run's report, plots and checkpoints
    best = ast.literal_eval(done.stdout.strip().splitlines()[-1])  # the example prints a dict of floats
    assert set(best) == {"distill"} and 0.5 < best["distill"] <= 1.0
    run = work / "runs" / "my-run"
    assert "## Validation" in (run / "report.md").read_text()
    assert (run / "plots" / "training.png").is_file()
    assert (run / "checkpoints" / "best.safetensors").is_file()
    assert (work / "runs" / "my-teacher" / "report.md").is_file()
