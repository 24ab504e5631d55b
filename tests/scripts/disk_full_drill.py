"""A disk that fills up during training, on a real (small) file system; run inside a private tmpfs.

    unshare -rm sh -c 'mount -t tmpfs -o size=2m tmpfs DIR && python disk_full_drill.py DIR'

In ``DIR`` it runs kd-core's toy through ``drill_train.py``, fills the file system right after the
first checkpoint (leaving a little room for log lines), lets the next checkpoint write fail, then frees
the space and resumes. It prints one JSON object: the failed run's exit status and error line, the
step the surviving checkpoint holds, the temp files left, and the resumed run's digest.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import drill_train


def main(directory: str) -> None:
    """Run the drill in ``directory`` (a small, private file system) and print its findings as JSON."""
    from kd_core.checkpoint import load_state

    root = Path(directory)
    out, filler = root / "run", root / "filler"
    failed = subprocess.run([sys.executable, drill_train.__file__, str(out), "--fill-disk-after-save", "1",
                             "--filler", str(filler), "--slack-kib", "12"], capture_output=True, text=True)
    last = out / "checkpoints" / "last.safetensors"
    report = {
        "returncode": failed.returncode,
        "stderr_tail": failed.stderr.strip().splitlines()[-1:] if failed.stderr.strip() else [],
        "filled": filler.is_file(),
        "last_step": int(load_state(last)["global_step"]) if last.is_file() else None,
        "last_json_step": json.loads((out / "checkpoints" / "last.json").read_text())["global_step"],
        "temp_files": sorted(p.name for p in out.rglob(".*.tmp")),
    }
    filler.unlink(missing_ok=True)  # space is freed: the run resumes from the surviving checkpoint
    report["resumed_digest"] = drill_train.run_toy(str(out), "--resume")
    print("REPORT " + json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1])
