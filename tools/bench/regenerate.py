"""Rerun the benchmarks this file knows about and rewrite their sections of ``docs/benchmarks.md``.

    .venv/bin/python tools/bench/regenerate.py                 # run them all, rewrite their sections
    .venv/bin/python tools/bench/regenerate.py --only scaling  # one benchmark
    .venv/bin/python tools/bench/regenerate.py --no-run        # re-render from the JSON already there
    .venv/bin/python tools/bench/regenerate.py --no-run --results DIR --label h200-cuda   # another machine's JSON

Each benchmark's section lies between ``<!-- BEGIN name -->`` and ``<!-- END name -->``; a section
missing from the page is appended at its end. Everything outside the markers is left as it was. The
section records the exact command, the machine, the load average during the run, and the results.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DOC = ROOT / "docs" / "benchmarks.md"


@dataclass(frozen=True)
class Benchmark:
    """A benchmark script, its default arguments and how its JSON becomes Markdown."""

    script: str
    args: tuple[str, ...]
    render: Callable[[dict[str, Any]], list[str]]


def _machine(result: dict[str, Any]) -> list[str]:
    env, load = result["environment"], result.get("load_average", {})
    start = ", ".join(f"{v:.2f}" for v in load.get("start") or [])
    end = ", ".join(f"{v:.2f}" for v in load.get("end") or [])
    extra = f", torchdistill {env['torchdistill']}" if env.get("torchdistill") else ""
    clock = {"cpu": "Times are **process CPU time** (`--clock cpu`: waits for a core left out). ",
             "instructions": "Counts are instructions executed (valgrind callgrind), not times. "}.get(
                 _clock(result), "Times are wall-clock. ")
    return [clock + f"Run {result['date']} on {env['platform']} ({env['processor']}, {env['cpu_count']} CPUs), "
            f"device `{result['settings']['device']}`, {env['torch_threads']} torch threads; Python {env['python']}, "
            f"torch {env['torch']}, kd-core {env['kd_core']}{extra}. Load average (1, 5, 15 min) at the start "
            f"{start}, at the end {end}: the machine may have been shared with other jobs."]


def _clock(result: dict[str, Any]) -> str:
    return result["settings"].get("clock", "wall")


def render_vs_torchdistill(r: dict[str, Any]) -> list[str]:
    """Markdown for ``vs_torchdistill.py``'s JSON."""
    s, peak, acc = r["step"], r["peak_memory_mib"], r["accuracy"]
    unit = "CPU ms/step" if _clock(r) == "cpu" else "ms/step"
    rows = [f"| side | median {unit} (p10–p90) | peak memory (MiB above start) | accuracy % (mean ± std over seeds) |",
            "|---|---|---|---|"]
    for side in ("kd", "torchdistill", "hand"):
        rows.append(f"| {side} | {s[side]['median_ms']:.3f} ({s[side]['p10_ms']:.2f}–{s[side]['p90_ms']:.2f}) | "
                    f"{peak[side]:.2f} | {acc['mean'][side]:.2f} ± {acc['std'][side]:.2f} |")
    holds = r["target_holds"]
    return [*rows, "",
            f"- kd / hand loop: **{r['ratio_kd_hand']:.3f}** (target ≤ {r['targets']['kd/hand']}: "
            f"{'holds' if holds['kd/hand'] else '**missed**'})",
            f"- kd / torchdistill: **{r['ratio_kd_torchdistill']:.3f}** (target ≤ {r['targets']['kd/torchdistill']}: "
            f"{'holds' if holds['kd/torchdistill'] else '**missed**'})",
            *([f"- A/A control, a second identical hand loop / hand loop: {r['ratio_control_hand']:.3f} (how far "
               "this lands from 1 is the resolution of the two ratios above)"] if "ratio_control_hand" in r else []),
            f"- peak memory kd / torchdistill: {r['peak_memory_ratio_kd_torchdistill']:.2f} "
            f"(measured as: {r['memory_method']})",
            "- accuracy per seed: " + "; ".join(f"{side} {', '.join(f'{a:.2f}' for a in acc['per_seed'][side])}"
                                                  for side in ("kd", "torchdistill", "hand")) +
            f"; teacher {acc['teacher_accuracy']:.2f}. Agree within seed noise (gap ≤ {acc['allowed_gap']:.2f} "
            f"points): **{acc['agree']}**",
            f"- warm-up: the three sides' losses from the same start differ by at most "
            f"{r['warmup_max_relative_loss_difference']:.1e} (relative)"]


def render_scaling(r: dict[str, Any]) -> list[str]:
    """Markdown for ``scaling.py``'s JSON."""
    unit = "CPU ms/epoch" if _clock(r) == "cpu" else "ms/epoch"
    rows = [f"| dataset | cache | samples | median {unit} | µs/sample | peak memory (MiB above start) |",
            "|---|---|---|---|---|---|"]
    for pair, row in r["table"].items():
        size, cache = pair.split("-")
        rows.append(f"| {size} | {cache} | {row['samples']} | {row['epoch_ms']:.1f} | {row['us_per_sample']:.2f} | "
                    f"{row['peak_mib']:.2f} |")
    lines = [*rows, ""]
    for cache, c in r["checks"].items():
        lines.append(f"- cache {cache}: time per sample 16× / 1× = **{c['per_sample_time_ratio_16x_1x']:.3f}** "
                     f"(linear within 15 %: {'yes' if c['time_linear'] else '**no**'}); peak memory 16× − 1× = "
                     f"{c['peak_growth_16x_mib']:+.2f} MiB (flat: {'yes' if c['memory_flat'] else '**no**'})")
    lines.append(f"- memory measured as: {r['memory_method']}")
    return lines


def render_instructions(r: dict[str, Any]) -> list[str]:
    """Markdown for ``instructions.py``'s JSON."""
    per_step, (s1, s2) = r["instructions_per_step"], r["settings"]["steps"]
    rows = ["| side | instructions per step (millions) | kd / side |", "|---|---|---|"]
    for side, n in per_step.items():
        ratio = r["ratios"].get(f"kd/{side}")
        rows.append(f"| {side} | {n / 1e6:.3f} | {f'{ratio:.4f}' if ratio is not None else '—'} |")
    lines = [*rows, ""]
    for name, ratio in r["ratios"].items():
        held = "holds" if r["target_holds"][name] else "**missed**"
        lines.append(f"- {name}: **{ratio:.4f}** (target ≤ {r['targets'][name]}: {held})")
    lines.append(f"- per step = (I({s2} steps) − I({s1} steps)) / {s2 - s1}, one thread, `PYTHONHASHSEED=0`; "
                 f"{r['environment']['valgrind']}, {r['minutes']:.1f} min. Instructions are not time: cache misses "
                 "and memory stalls are not counted.")
    return lines


def render_speech_rtf(r: dict[str, Any]) -> list[str]:
    """Markdown for ``speech_rtf.py``'s JSON."""
    stages, rtf, d, z = r["stage_ms_per_utterance"], r["rtf"], r["data"], r["sizes"]
    rows = ["| pipeline | stages (median ms per utterance) | RTF, median (rounds: min–max) |", "|---|---|---|"]
    for name, parts in r["pipelines"].items():
        spread = r["rtf_per_round"][name]
        rows.append(f"| {name} | {' + '.join(f'{p} {stages[p]:.1f}' for p in parts)} | **{rtf[name]:.4f}** "
                    f"({min(spread):.4f}–{max(spread):.4f}) |")
    ratios = r["ratios"]
    failed = [name for name, c in r["checks"].items() if not c["ok"]]
    slu, lm_t, lm_s = z["slu"], z["lm_teacher"], z["lm_student"]
    return [*rows, "",
            f"- distilled SLU / teacher pipeline RTF: **{ratios['slu-student/teacher']:.4f}** "
            f"({1 / ratios['slu-student/teacher']:.1f}× faster)",
            f"- rescoring pipeline, distilled LM / teacher LM: "
            f"**{ratios['rescore-student-lm/rescore-teacher-lm']:.3f}**; against the 1-best teacher pipeline: "
            f"{ratios['rescore-student-lm/teacher']:.3f}",
            f"- LM rescoring alone (the same {z['nbest']}-best lists), distilled / teacher time: "
            f"**{ratios['lm-student/lm-teacher']:.3f}** ({1 / ratios['lm-student/lm-teacher']:.2f}× faster)",
            f"- data: {d['utterances']} utterances, {d['audio_seconds']:.1f} s of audio (synthesized commands, "
            f"unseen test voices {', '.join(d['voices'])}); {r['settings']['rounds']} rounds",
            f"- sizes: tokens from {slu.get('tokenizer', 'vq-wav2vec')}"
            f"{f' ({v:,} parameters)' if (v := slu['vq_parameters']) else ''} + "
            f"speech BERT {slu['bert'][1]}×{slu['bert'][0]} with a DS2 head (conv {slu['head'][0]} channels, BiLSTM "
            f"{slu['head'][2]}×{slu['head'][1]}): {slu['model_parameters']:,} parameters; MiniLM "
            f"{z['minilm_parameters']:,}; word LMs over "
            f"{z['lm_vocabulary']:,} words: teacher {lm_t['n_layer']}×{lm_t['n_embd']} {lm_t['parameters']:,}, "
            f"student {lm_s['n_layer']}×{lm_s['n_embd']} {lm_s['parameters']:,} "
            f"({lm_t['parameters'] / lm_s['parameters']:.2f}× fewer)",
            f"- weights: {r['weights']}",
            f"- sanity checks: {'all hold' if not failed else 'FAILED: ' + '; '.join(failed)} "
            f"({len(r['checks'])} checks)"]


BENCHMARKS = {
    "vs_torchdistill": Benchmark("vs_torchdistill.py", (), render_vs_torchdistill),
    "scaling": Benchmark("scaling.py", (), render_scaling),
    "instructions": Benchmark("instructions.py", (), render_instructions),
    "speech_rtf": Benchmark("speech_rtf.py", (), render_speech_rtf),
}
TITLES = {"vs_torchdistill": "kd vs torchdistill vs a hand-written loop (`tools/bench/vs_torchdistill.py`)",
          "scaling": "Scaling with the dataset size, teacher cache off and on (`tools/bench/scaling.py`)",
          "instructions": "Instructions per step under valgrind: kd vs the hand loop vs torchdistill "
                          "(`tools/bench/instructions.py`)",
          "speech_rtf": "Spoken intents on the CPU: real-time factor of the distilled SLU model and of n-best "
                        "rescoring against the ASR → MiniLM teacher pipeline (`tools/bench/speech_rtf.py`)"}


def section(name: str, result: dict[str, Any], command: str, label: str = "") -> str:
    """The whole Markdown section for one benchmark (``label``: a variant, e.g. another machine), markers included."""
    marker = f"{name}-{label}" if label else name
    title = f"{TITLES[name]}: {label}" if label else TITLES[name]
    body = [f"<!-- BEGIN {marker} -->", f"### {title}", "",
            "Regenerated by `tools/bench/regenerate.py`; do not edit between the markers.", "",
            "Command:", "", "```", command, "```", "", *_machine(result), "", *BENCHMARKS[name].render(result),
            f"<!-- END {marker} -->"]
    return "\n".join(body)


def replace_section(text: str, name: str, new: str) -> str:
    """``text`` with the section of ``name`` replaced by ``new`` (appended when it has no markers)."""
    pattern = re.compile(rf"<!-- BEGIN {re.escape(name)} -->.*?<!-- END {re.escape(name)} -->", re.S)
    if pattern.search(text):
        return pattern.sub(lambda _: new, text, count=1)
    return text.rstrip("\n") + "\n\n" + new + "\n"


def run(name: str, extra: Sequence[str], json_path: Path) -> str:
    """Run one benchmark (nice'd, as on a shared machine) and return its command line as recorded."""
    bench = BENCHMARKS[name]
    argv = [*bench.args, *extra, "--json", str(json_path)]
    shown = " ".join(["nice -n 5", ".venv/bin/python", f"tools/bench/{bench.script}",
                      *map(shlex.quote, [*bench.args, *extra])])
    print(f"running: {shown}", flush=True)
    subprocess.run(["nice", "-n", "5", sys.executable, str(HERE / bench.script), *argv], check=True, cwd=ROOT)
    return shown


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen benchmarks and rewrite their sections."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), default=sorted(BENCHMARKS))
    parser.add_argument("--no-run", action="store_true", help="render from the JSON in --results")
    parser.add_argument("--results", type=Path, default=HERE / "results", help="where the JSON goes")
    parser.add_argument("--doc", type=Path, default=DOC)
    parser.add_argument("--label", default="", help="a variant's name: its own sections, NAME-LABEL")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=ARGS",
                        help="extra arguments for one benchmark, e.g. scaling='--base 512 --rounds 2'")
    args = parser.parse_args(argv)
    if not args.no_run and "instructions" in args.only and shutil.which("valgrind") is None:
        print("skipping instructions: valgrind is not on PATH (Debian: apt-get install valgrind)")
        args.only = [name for name in args.only if name != "instructions"]
    missing = [tool for tool in ("espeak-ng", "flite") if shutil.which(tool) is None]
    if not args.no_run and "speech_rtf" in args.only and missing:
        print(f"skipping speech_rtf: {', '.join(missing)} not on PATH (Debian: apt-get install espeak-ng flite)")
        args.only = [name for name in args.only if name != "speech_rtf"]
    extra = {name: [] for name in BENCHMARKS}
    for item in args.set:
        name, _, value = item.partition("=")
        if name not in BENCHMARKS:
            parser.error(f"--set: unknown benchmark {name!r}")
        extra[name] = shlex.split(value)
    for name in args.only:
        json_path = args.results / f"{name}.json"
        command_path = args.results / f"{name}.command.json"  # beside the results, ignored by git like them
        if args.no_run:
            command = json.loads(command_path.read_text())["command"] if command_path.is_file() else "(not recorded)"
        else:
            args.results.mkdir(parents=True, exist_ok=True)
            command = run(name, extra[name], json_path)
            command_path.write_text(json.dumps({"command": command}) + "\n")
        marker = f"{name}-{args.label}" if args.label else name
        # read after the run, not before it: edits made to the page while a benchmark ran are kept
        text = args.doc.read_text() if args.doc.is_file() else "# Benchmarks\n"
        text = replace_section(text, marker, section(name, json.loads(json_path.read_text()), command, args.label))
        args.doc.write_text(text)
    print(f"rewrote {', '.join(args.only)} in {os.path.relpath(args.doc, ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
