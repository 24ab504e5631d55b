"""Options every repro script shares: seeds, device, CPU threads, the run folder and the results page.

Imported by the scripts beside it (run as ``python tools/repro/<script>.py``, which puts this folder on
``sys.path``).
"""

from __future__ import annotations

import argparse
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def base_parser(doc: str | None, name: str, *, seeds: Sequence[int] = (0, 1, 2), run_name: str | None = None,
                page_option: str = "--doc", threads: bool = True) -> argparse.ArgumentParser:
    """A parser with ``--seeds``, ``--device``, ``--threads``, ``--out`` (runs/repro-NAME) and the results page.

    ``page_option`` names the results-page option (``--doc`` or ``--results``), default
    ``docs/results/NAME.md``; ``run_name`` overrides the run folder's name.
    """
    parser = argparse.ArgumentParser(description=(doc or name).splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(seeds))
    parser.add_argument("--device", default="cpu")
    if threads:
        parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a busy box)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / (run_name or f"repro-{name}"))
    parser.add_argument(page_option, type=Path, default=ROOT / "docs" / "results" / f"{name}.md")
    return parser


def shown(path: Path) -> str:
    """``path`` relative to the repository root when it lies inside it (for results pages)."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(resolved)


def run_recipe_study(recipe: str, domain: str, overrides: Sequence[str], out: Path, device: str) -> tuple[Path, float]:
    """Run a study recipe (the shipped ``recipe`` of ``domain`` with ``overrides``, validated as ``--set`` would be)
    in ``out``; return the run directory and the wall time in minutes."""
    import time

    from kd_core.recipes import RunContext, load_recipe

    method, config = load_recipe(recipe, overrides, domain=domain)
    start = time.perf_counter()
    run = method.build(config).run(RunContext(out=out, device=device))
    return Path(run), (time.perf_counter() - start) / 60


def study_page(run: Path, title: str, intro: str, command: str, minutes: float, out: Path) -> str:
    """A results page: ``title``, ``intro`` (paper, setting), the run's report from its summary to its per-seed
    table (teacher quality, plain KD vs scratch, paired comparisons with 95 % intervals and verdicts), then how
    to reproduce it."""
    report = (Path(run) / "report.md").read_text()
    start = report.index("## Summary")
    end = report.index("## Reproduce")
    return (f"# {title}\n\n{intro.strip()}\n\n{report[start:end].rstrip()}\n\n## Reproduce\n\n```\n{command}\n```\n\n"
            f"Wall time: {minutes:.1f} min on a shared 2-core CPU. The run directory (`{shown(out)}`) holds "
            "`report.md` with plots, `results.json` and one sub-run per arm and seed.\n")


def copy_plots(page: str, run: Path, doc: Path) -> str:
    """``page`` with every ``](plots/NAME.png)`` link pointing at a copy ``<doc stem>-NAME.png`` beside ``doc`` (the
    run directory is not committed)."""
    def copy(match: re.Match[str]) -> str:
        name = match.group(1)
        target = doc.parent / f"{doc.stem}-{name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(run) / "plots" / name, target)
        return f"]({target.name})"

    return re.sub(r"\]\(plots/([\w.-]+\.png)\)", copy, page)
