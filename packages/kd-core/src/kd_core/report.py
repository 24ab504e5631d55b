"""Markdown reports: tables of results, embedded plots, and the command that reproduces a run."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kd_core.runs import RunDir


def _cell(value: Any, digits: int) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, int) and abs(value) >= 10_000:
        return f"{value:,}"
    return str(value)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None,
                   digits: int = 4) -> str:
    """A GitHub-flavoured markdown table of ``rows`` (dicts), in ``columns`` order."""
    if not rows:
        return "_no rows_\n"
    columns = list(columns or rows[0].keys())
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c, ""), digits) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def command_line() -> str:
    """The command that started this process, quoted for a shell."""
    program = Path(sys.argv[0]).name if sys.argv else "python"
    return " ".join([program, *map(shlex.quote, sys.argv[1:])])


def write_report(run: RunDir, title: str, sections: Sequence[tuple[str, str]],
                 plots: Sequence[tuple[str, Path]] = ()) -> Path:
    """Write ``report.md``: a title, ``(heading, markdown)`` sections and plots linked relative to the run."""
    parts = [f"# {title}\n"]
    for heading, body in sections:
        parts.append(f"## {heading}\n\n{body.rstrip()}\n")
    if plots:
        parts.append("## Plots\n")
        for caption, path in plots:
            rel = Path(path).resolve().relative_to(run.path.resolve())
            parts.append(f"### {caption}\n\n![{caption}]({rel.as_posix()})\n")
    return run.write_text("report.md", "\n".join(parts))
