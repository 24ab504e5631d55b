"""Options every repro script shares: seeds, device, CPU threads, the run folder and the results page.

Imported by the scripts beside it (run as ``python tools/repro/<script>.py``, which puts this folder on
``sys.path``).
"""

from __future__ import annotations

import argparse
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def study_page(run: Path, title: str, intro: str, command: str, minutes: float, out: Path, closing: str = "") -> str:
    """A results page: ``title``, ``intro`` (paper, setting), the run's report from its summary to its per-seed
    table (teacher quality, plain KD vs scratch, paired comparisons with 95 % intervals and verdicts), then
    ``closing`` (the page's claims, :func:`claims_section`) and how to reproduce it."""
    from kd_core.datacache import data_home

    # cache paths shown as the user's own ($KD_DATA_HOME), not this machine's
    report = (Path(run) / "report.md").read_text().replace(str(data_home()), "$KD_DATA_HOME")
    start = report.index("## Summary")
    end = report.index("## Reproduce")
    claims = f"## Claims\n\n{closing.strip()}\n\n" if closing.strip() else ""
    return (f"# {title}\n\n{intro.strip()}\n\n{report[start:end].rstrip()}\n\n{claims}"
            f"## Reproduce\n\n```\n{command}\n```\n\n"
            f"Wall time: {minutes:.1f} min on a shared 2-core CPU. The run directory (`{shown(out)}`) holds "
            "`report.md` with plots, `results.json` and one sub-run per arm and seed.\n")


@dataclass(frozen=True)
class PaperClaim:
    """A paper's claim as a paired comparison of two arms: ``a`` against ``b`` on ``metric`` (the study's headline
    when None), in the paper's words ``claim``."""

    a: str
    b: str
    claim: str
    metric: str | None = None


def _gates_passed(results: Mapping[str, Any]) -> list[str]:
    """Why the run cannot test a KD variant's claim (empty when both gates pass or were not judged): the teacher
    gate or the KD gate (``kd_core.gates``, recorded by the study report in ``results.json``) failed."""
    problems = []
    if any(not check["passed"] for check in results.get("teacher", {}).get("gate", [])):
        problems.append("the teacher gate failed")
    if not results.get("kd_gate", {}).get("passed", True):
        problems.append("plain KD did not beat scratch")
    return problems


def claims_section(results: Mapping[str, Any], claims: Sequence[PaperClaim], scale: str, paper_scale: str) -> str:
    """The page's closing: one line per claim (a − b, its 95 % interval, the verdict) read from the study's
    ``results`` (``results.json``), whether the gates let the run test a KD variant, the scale tested and what
    testing the claim at the paper's scale would take."""
    headline = results.get("task", {}).get("headline")
    found = {(c["a"], c["b"], c["metric"]): c for c in results.get("comparisons", [])}
    lines = []
    for claim in claims:
        c = found.get((claim.a, claim.b, claim.metric or headline))
        if c is None:
            lines.append(f"- {claim.claim} ({claim.a} − {claim.b}): not compared in this run.")
            continue
        interval = "no interval (n = 1)" if c["low"] is None else f"95 % CI [{c['low']:+.2f}, {c['high']:+.2f}]"
        lines.append(f"- {claim.claim} ({c['a']} − {c['b']}, {c['metric']}): {c['mean']:+.2f}, {interval}, "
                     f"{c['n']} paired seed{'' if c['n'] == 1 else 's'}: **{c['verdict']}**.")
    problems = _gates_passed(results)
    if problems:
        lines.append(f"\nThe gates did not pass ({'; '.join(problems)}): the lines above describe this run; they are "
                     "not evidence for or against a KD variant's claim.")
    lines += [f"\n**Scale tested**: {scale.strip()}", f"\n**At the paper's scale**: {paper_scale.strip()}"]
    return "\n".join(lines)


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
