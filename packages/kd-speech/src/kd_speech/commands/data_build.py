"""``kd-speech data build``: synthesize (or load from the cache) the spoken-command set and report on it.

The run directory (``--out``, default ``runs/speech-data``) is checked and locked first, so that a bad
``--out`` fails before any synthesis; then the set is built through ``kd_speech.data.build_command_set``
(cached under ``$KD_DATA_HOME/speech-commands/``), and ``report.md`` with ``plots/durations.png`` (utterance
durations per split) and ``results.json`` (counts, voices, hours per split) are written.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from kd_core.errors import ConfigError

__all__ = ["FLAGS", "add_arguments", "run"]

#: ``CommandSetConfig`` field -> the flag that sets it (errors name the flag).
FLAGS = {"seed": "--seed", "voices": "--voices", "flite_voices": "--flite-voices",
         "utterances_per_intent": "--per-intent", "intents": "--intents", "val_voices": "--val-voices",
         "test_voices": "--test-voices", "fmt": "--format"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``kd-speech data build``."""
    parser.add_argument("action", choices=["build"], help="build: synthesize (or load) the spoken-command set")
    parser.add_argument("--voices", type=int, default=4, help="distinct voices (espeak-ng and flite), >= 3")
    parser.add_argument("--flite-voices", type=int, default=1, help="how many of them are flite voices (0-4)")
    parser.add_argument("--per-intent", type=int, default=1, help="phrasings of each intent every voice speaks (1-6)")
    parser.add_argument("--intents", type=int, default=None, help="the first N of the 31 intents (default all)")
    parser.add_argument("--val-voices", type=int, default=1, help="voices held out for validation")
    parser.add_argument("--test-voices", type=int, default=1, help="voices held out for test (unseen in training)")
    parser.add_argument("--seed", type=int, default=0, help="picks the voices, phrasings and jitter")
    parser.add_argument("--format", choices=["flac", "wav"], default="flac", help="audio format in the cache")
    parser.add_argument("--rebuild", action="store_true", help="synthesize again even if the cache verifies")
    parser.add_argument("--out", default=None, help="run directory for the report (default runs/speech-data)")


def _config(args: argparse.Namespace) -> Any:
    from kd_core.recipes import check_seed

    from kd_speech.data import CommandSetConfig

    check_seed(args.seed)
    try:
        return CommandSetConfig(seed=args.seed, voices=args.voices, flite_voices=args.flite_voices,
                                utterances_per_intent=args.per_intent, intents=args.intents,
                                val_voices=args.val_voices, test_voices=args.test_voices, fmt=args.format)
    except ConfigError as err:  # name the flags, not the dataclass fields
        fields = "|".join(sorted(FLAGS, key=len, reverse=True))
        argument = re.sub(rf"\b({fields})\b", lambda m: FLAGS[m.group(1)], err.argument)
        raise ConfigError(argument, err.expected, err.received, hint=err.hint) from None


def _durations_plot(rows: dict[str, list[float]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from kd_core.plots import save_figure

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for split, seconds in rows.items():
        if seconds:
            ax.hist(seconds, bins=20, alpha=0.6, label=f"{split} ({len(seconds):,})")
    ax.set_xlabel("utterance duration (s)")
    ax.set_ylabel("utterances")
    ax.set_title("spoken commands: durations per split")
    ax.legend(fontsize="small")
    return save_figure(fig, path)


def run(args: argparse.Namespace) -> Path:
    """Build the set ``args`` describe and write the report; return the run directory."""
    from kd_core.cli import default_out
    from kd_core.report import command_line, markdown_table, write_report
    from kd_core.runs import RunDir

    from kd_speech.data import SAMPLE_RATE, build_command_set, require_synthesizer

    config = _config(args)
    for name in ("espeak", "flite") if config.flite_voices else ("espeak",):
        require_synthesizer(name)  # a missing synthesizer names its Debian package, before the run directory
    out = Path(args.out) if args.out else default_out("speech-data", resume=False)
    run_dir = RunDir.create(out, {"command": "data build", **{k: v for k, v in vars(args).items()
                                                              if k not in ("func", "command")}})
    try:
        built = build_command_set(config, rebuild=args.rebuild)
        seconds = {split: [u.info["samples"] / SAMPLE_RATE for u in built.split(split)]
                   for split in ("train", "val", "test")}
        rows = [{"split": split, "utterances": len(values), "voices": len(built.voices(split)),
                 "hours": sum(values) / 3600, "mean s": sum(values) / max(1, len(values))}
                for split, values in seconds.items()]
        voices = {split: sorted(built.voices(split)) for split in seconds}
        run_dir.write_json("results.json", {"directory": str(built.directory), "config": built.info["config"],
                                            "splits": rows, "voices": voices, "classes": list(built.classes),
                                            "synthesizers": built.info.get("synthesizers", {})})
        plot = _durations_plot(seconds, run_dir.plots / "durations.png")
        listing = "\n".join(f"- {split}: {', '.join(names)}" for split, names in voices.items())
        write_report(run_dir, "kd-speech data build: spoken commands", [
            ("Command", f"```\n{command_line()}\n```"),
            ("Set", f"{len(built.utterances):,} utterances of {len(built.classes)} intents, 16 kHz, cached in "
                    f"`{built.directory}` (manifest.jsonl: file, transcript, intent, slots, voice, split)."),
            ("Splits", markdown_table(rows, digits=3) + "\nSplits are by voice: test voices are unseen in "
                                                        "training."),
            ("Voices", listing),
            ("Synthesizers", "\n".join(f"- {k}: {v}" for k, v in built.info.get("synthesizers", {}).items())),
        ], plots=[("Durations", plot)])
    finally:
        run_dir.close()
    return run_dir.path
