"""Write ``docs/results/README.md``: every results page with its gate and its paired verdicts in one table.

Each page in ``docs/results/`` is written by a ``tools/repro/`` script. A page that follows the project's rules
states its claims as paired comparisons, one sentence each, in the form the study reports use::

    **kd** beats **scratch** by 0.11 in psnr (95 % CI of the difference -0.54 to +0.77, 3 paired seeds): **held**

or as a row of a paired-comparisons table (``| a | b | metric | mean | low to high | seeds | verdict |``), and,
where the study has them, its gates: ``**Teacher gate**: passed`` / ``**failed**`` (the teacher is worth
distilling), ``**KD gate**: ...`` (plain KD beats scratch, so a KD variant's gain can show), or a page's own
``Gate passed`` / ``Gate failed`` (the teacher beats the trivial baselines). This script reads those sentences
back; it never recomputes a number. A page without such sentences is listed as not yet regenerated with paired
intervals.

    .venv/bin/python tools/repro/results_index.py            # rewrite docs/results/README.md
    .venv/bin/python tools/repro/results_index.py --check    # exit 1 if the README is out of date
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "results"
VERDICTS = ("held", "not held", "inconclusive")

_CLAIM = re.compile(r"\*\*(?P<a>[^*]+)\*\* (?P<how>beats|loses to|ties with|ties) \*\*(?P<b>[^*]+)\*\* by "
                    r"(?P<size>[^()]*?) in (?P<metric>.+?) \(95 % CI of the difference (?P<low>\S+) to (?P<high>\S+), "
                    r"(?P<n>\d+) paired (?P<unit>\w+)\): \*\*(?P<verdict>held|not held|inconclusive)\*\*")
_ROW = re.compile(r"^\| (?P<a>[^|]+?) \| (?P<b>[^|]+?) \| (?P<metric>[^|]+?) \| [+-]?[\d.]+ \| (?P<low>\S+) to "
                  r"(?P<high>\S+) \| (?P<n>\d+) \| (?P<verdict>held|not held|inconclusive) \|$", re.MULTILINE)
_GATE = re.compile(r"(Gate passed|\*\*Gate failed\*\*)")
_NAMED_GATE = re.compile(r"\*\*(?P<name>Teacher|KD) gate\*\*: (?P<state>passed|\*\*failed\*\*)")


@dataclass
class Claim:
    """One paired comparison read from a page."""

    a: str
    b: str
    metric: str
    low: str
    high: str
    n: int
    unit: str
    verdict: str

    def line(self) -> str:
        """The claim on one line: the pair, the metric, the interval of a − b, the sample size and the verdict."""
        interval = f"[{self.low}, {self.high}]"
        return f"{self.a} vs {self.b}, {self.metric}: {interval} ({self.n} {self.unit}) **{self.verdict}**"


@dataclass
class Page:
    """What a results page states: its title, gate and claims."""

    name: str
    title: str
    gate: str = ""
    claims: list[Claim] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """How many claims have each verdict."""
        return {v: sum(c.verdict == v for c in self.claims) for v in VERDICTS}


def _state(states: list[bool]) -> str:
    failed = states.count(False)
    if not failed:
        return "passed"
    return "**failed**" if failed == len(states) else f"**failed** in {failed} of {len(states)} studies"


def gates(text: str) -> str:
    """The page's gates in a few words: ``teacher passed · KD **failed**`` (several studies on one page: how many
    failed), or a page's own gate (``passed`` / ``**failed**``); empty when it states none."""
    named: dict[str, list[bool]] = {}
    for m in _NAMED_GATE.finditer(text):
        named.setdefault(m["name"], []).append(m["state"] == "passed")
    if named:
        return " · ".join(f"{name if name == 'KD' else name.lower()} {_state(states)}"
                          for name, states in sorted(named.items(), key=lambda kv: kv[0] != "Teacher"))
    own = _GATE.findall(text)
    return _state([g == "Gate passed" for g in own]) if own else ""


def read_page(path: Path) -> Page:
    """The title, gate and paired claims of one page (claims counted once, in page order)."""
    text = path.read_text(encoding="utf-8")
    title = text.splitlines()[0].lstrip("# ").strip() if text else path.stem
    page = Page(path.name, title)
    page.gate = gates(text)
    seen: set[tuple[str, ...]] = set()  # a page may hold several studies with the same arm names
    for m in [*_CLAIM.finditer(text), *_ROW.finditer(text)]:
        key = (m["a"], m["b"], m["metric"], m["low"], m["high"])
        if key not in seen:
            seen.add(key)
            unit = m.groupdict().get("unit") or "seeds"
            page.claims.append(Claim(m["a"], m["b"], m["metric"], m["low"], m["high"], int(m["n"]), unit,
                                     m["verdict"]))
    return page


def render(pages: list[Page]) -> str:
    """The README's markdown."""
    lines = ["# Results", "",
             "Every page here is written by one `tools/repro/` script (the command is at the end of each page). A "
             "claim is a paired comparison over seeds (the same initialisation and data order for every arm) with the "
             "95 % t-interval of the difference: **held** when the interval lies on the claimed side of zero, **not "
             "held** when it lies on the other side, **inconclusive** when it spans zero. The teacher gate, where a "
             "study has one, says whether the teacher is worth distilling (it beats the scratch students or trivial "
             "baselines and is not under-confident); the KD gate, whether plain KD beats scratch by a held interval, "
             "without which no KD variant's gain can show. Where a gate fails, the page's verdicts describe the run "
             "and test nothing. This index is written by `tools/repro/results_index.py` from the pages' own "
             "sentences and comparison tables; claims a page states only in its own words (a direction section, for "
             "example) are on the page.", "",
             "| page | gates | held | not held | inconclusive |", "|---|---|---|---|---|"]
    for p in pages:
        c = p.counts()
        if p.claims:
            lines.append(f"| [{p.title}]({p.name}) | {p.gate or '—'} | {c['held']} | {c['not held']} | "
                         f"{c['inconclusive']} |")
        else:
            lines.append(f"| [{p.title}]({p.name}) | {p.gate or '—'} | not yet regenerated with paired intervals | | |")
    lines += ["", "## Claims by page", ""]
    for p in pages:
        if p.claims:
            lines += [f"**[{p.title}]({p.name})**", "", *[f"- {c.line()}" for c in p.claims], ""]
    return "\n".join(lines).rstrip() + "\n"


def build(results: Path = RESULTS) -> str:
    """The README for every page in ``results`` (sorted by file name)."""
    return render([read_page(p) for p in sorted(results.glob("*.md")) if p.name != "README.md"])


def main(argv: list[str] | None = None) -> int:
    """Write the README, or with ``--check`` compare it with what would be written."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/results/README.md is out of date")
    args = parser.parse_args(argv)
    text, target = build(), RESULTS / "README.md"
    if args.check:
        current = target.read_text(encoding="utf-8") if target.is_file() else ""
        if current != text:
            print(f"{target} is out of date: run tools/repro/results_index.py", file=sys.stderr)
            return 1
        return 0
    target.write_text(text, encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
