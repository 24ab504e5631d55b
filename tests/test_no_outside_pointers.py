"""Nothing in the repository points at files outside it.

Users get the repository and nothing else: a docstring, comment, recipe or page that sends the reader to a
design note or research file kept beside the checkout (``../shared/``, ``research/methods-a.md`` §B1,
``DESIGN.md`` §3, ...) points at nothing. Method docstrings cite the paper instead, and state the facts
(defaults, deviations) themselves; the architecture is described in ``docs/architecture.md``.

The test scans the tracked text files (``git ls-files``: .py .md .yaml .yml .toml .sh .txt and extensionless
scripts) and names every offending ``file:line``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".sh", ".txt"}
# Names of the files that live outside the repository, and the paths that lead there.
OUTSIDE = re.compile(
    r"research/methods-|\.\./shared/|shared/research|methods-[ab]\.md|DESIGN\.md|review-2026"
    r"|offline-data\.md|anchors\.md|stack\.md"
)
SELF = Path(__file__).resolve().relative_to(ROOT).as_posix()


def tracked_files() -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the tracked files cannot be listed")
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    # Text files by suffix, plus extensionless scripts such as ``.ci/run``.
    return [name for name in out.split("\0") if name and (Path(name).suffix in SUFFIXES or "." not in Path(name).name)]


def outside_pointers(root: Path, names: list[str]) -> list[str]:
    """``file:line: text`` for every line of the named files that points outside the repository."""
    found = []
    for name in names:
        if name == SELF:
            continue
        path = root / name
        if not path.is_file():  # tracked but deleted in the working tree
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                found.append(f"{name}:{number}: {line.strip()[:160]}")
    return found


def test_the_scan_sees_a_pointer(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text('"""Annealing-KD.\n\nSpec in research/methods-a.md §B1."""\n')
    (tmp_path / "README.md").write_text("See `../shared/DESIGN.md` for the architecture.\n")
    (tmp_path / "ok.md").write_text("See docs/architecture.md.\n")
    assert outside_pointers(tmp_path, ["m.py", "README.md", "ok.md"]) == [
        "m.py:3: Spec in research/methods-a.md §B1.\"\"\"",
        "README.md:1: See `../shared/DESIGN.md` for the architecture.",
    ]


def test_no_tracked_file_points_outside_the_repository() -> None:
    found = outside_pointers(ROOT, tracked_files())
    assert not found, (
        "these lines point at files outside the repository (cite the paper, state the fact, or point at "
        "docs/architecture.md):\n" + "\n".join(found)
    )
