"""``kd-generative data build``: build (or read from the cache) the offline sets and report on them.

``--set pairs`` (default) builds the paired image-to-image sets (``--direction edges|grey|mask|all``) through
:func:`kd_generative.data.build_pairs`, cached under ``$KD_DATA_HOME/pix2pix/``; ``--set talking`` builds the
talking-face set (:class:`kd_generative.talking.dataset.TalkingFaceData`: speech synthesized with espeak-ng and
flite, phones force-aligned by pocketsphinx, real faces driven by them). The run directory (``--out``, default
``runs/generative-data``) is checked and locked first, so a bad ``--out`` fails before anything is built; then
``report.md``, ``results.json`` and a sample image per set are written. For pairs, the report also gives the
trivial baselines (mean colour, input copy) a generator must beat on the test split.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from kd_core.errors import ConfigError

__all__ = ["SETS", "add_arguments", "run"]

#: What ``--set`` builds.
SETS = ("pairs", "talking")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``kd-generative data build``."""
    parser.add_argument("action", choices=["build"], help="build: make (or load) the offline set and report on it")
    parser.add_argument("--set", dest="which", choices=SETS, default="pairs",
                        help="pairs: image-to-image pairs cut from offline photos; talking: the talking-face set")
    parser.add_argument("--direction", choices=["edges", "grey", "mask", "all"], default="all",
                        help="pairs: which input map (each to the colour photo)")
    parser.add_argument("--size", type=int, default=None, help="side in pixels (pairs: default 64; talking: 48)")
    parser.add_argument("--crops", type=int, default=8, help="pairs: crops per photo or kept video frame")
    parser.add_argument("--seed", type=int, default=0, help="pairs: crop positions; talking: head drift")
    parser.add_argument("--rebuild", action="store_true", help="build again even if the cache verifies")
    parser.add_argument("--out", default=None, help="run directory for the report (default runs/generative-data)")


def _check(args: argparse.Namespace) -> None:
    from kd_core.recipes import check_seed

    check_seed(args.seed)
    if args.size is not None and (args.size < 12 if args.which == "talking" else args.size < 8):
        raise ConfigError("--size", "at least 8 pixels (pairs) or 12 (talking)", args.size)
    if args.crops < 1:
        raise ConfigError("--crops", "an integer >= 1", args.crops)
    if args.which == "talking":
        _talking_config(args)


def _talking_config(args: argparse.Namespace) -> Any:
    from kd_generative.talking.dataset import TalkingConfig

    try:
        return TalkingConfig(size=args.size or 48, seed=args.seed)
    except ConfigError as err:
        raise ConfigError("--size" if err.argument == "size" else err.argument, err.expected, err.received) from None


def _pairs(args: argparse.Namespace, plots: Path) -> tuple[list[tuple[str, str]], dict[str, Any], list]:
    from kd_core.report import markdown_table

    from kd_generative.data import DIRECTIONS, build_pairs
    from kd_generative.plots import image_grid
    from kd_generative.tasks.baselines import baseline_scores

    size = args.size or 64
    directions = list(DIRECTIONS) if args.direction == "all" else [args.direction]
    rows, baselines, figures, results = [], [], [], {}
    for direction in directions:
        built = build_pairs(direction, size, args.seed, crops=args.crops, rebuild=args.rebuild)
        counts = {split: len(part) for split, part in built.splits.items()}
        rows.append({"direction": f"{direction} → photo", **counts, "input channels": built.in_channels,
                     "cache": "read" if built.from_cache else "built", "folder": f"`{built.directory}`"})
        scores = baseline_scores(built.train, built.test, direction)
        baselines += [{"direction": direction, "baseline": name, "psnr": f"{s['psnr']:.2f}", "ssim": f"{s['ssim']:.3f}"}
                      for name, s in scores.items()]
        test = built.test
        grid = image_grid({"input": test.inputs[:6], "target": test.targets[:6]}, plots / f"{direction}.png")
        figures.append((f"{direction} → photo (test)", grid))
        results[direction] = {"counts": counts, "directory": str(built.directory), "baselines": scores,
                              "key": built.manifest.get("key")}
    sections = [("Sets", f"{size}×{size} crops, {args.crops} per photo or kept frame, crop seed {args.seed}; split "
                         "by photo or video block, never by crop.\n\n" + markdown_table(rows)),
                ("Trivial baselines (test split)", "What a generator must beat: the train targets' mean colour, "
                 "and (grey or superpixel inputs) the input itself. PSNR in dB.\n\n" + markdown_table(baselines))]
    return sections, results, figures


def _talking(args: argparse.Namespace, plots: Path) -> tuple[list[tuple[str, str]], dict[str, Any], list]:
    from kd_core.report import markdown_table

    from kd_generative.plots import image_grid
    from kd_generative.talking.dataset import SPLITS, TalkingFaceData

    config = _talking_config(args)
    data = TalkingFaceData(config, reuse=not args.rebuild)
    manifest = data.manifest()
    rows = []
    for split in SPLITS:
        clips = [c for c in manifest["clips"] if c["split"] == split]
        rows.append({"split": split, "clips": len(clips), "voices": len({c["voice"] for c in clips}),
                     "sentences": len({c["sentence"] for c in clips}), "faces": len({c["face"] for c in clips}),
                     "frames": sum(c["frames"] for c in clips)})
    figures = []
    if data.clips:
        frames = data.clip_frames(0)[: min(8, data.clips[0].n_frames)].float() / 127.5 - 1
        strip = image_grid({f"frame {i}": frames[i:i + 1] for i in range(len(frames))}, plots / "talking.png")
        figures.append(("The first clip's first frames", strip))
    rejected = manifest["rejected"]
    speech = manifest["speech"]
    versions = {name: text.splitlines()[0].split("  Data at")[0] for name, text in speech.get("tools", {}).items()}
    tools = "; ".join(f"{name}: {version}" for name, version in versions.items())
    left_out = "".join(f"\n- sentence {r.get('sentence')} by {r.get('voice')}: {r.get('why')}" for r in rejected)
    sections = [("Set", f"{len(data.clips)} clips at {config.size} px, {config.fps:g} fps: "
                        f"{len(speech.get('sentences', []))} sentences × {len(speech.get('voices', []))} voices "
                        f"({', '.join(speech.get('voices', []))}); {tools}; pocketsphinx "
                        f"{speech.get('pocketsphinx')}. Splits are by sentence and face.\n\n" + markdown_table(rows)),
                ("Alignment", f"{len(rejected)} utterance(s) left out because pocketsphinx could not align them"
                              + (f":{left_out}" if rejected else "."))]
    return sections, {"talking": {"splits": rows, "rejected": rejected, "config": manifest["config"]}}, figures


def run(args: argparse.Namespace) -> Path:
    """Build the set ``args`` name and write the report; return the run directory."""
    from kd_core.cli import default_out
    from kd_core.report import command_line, write_report
    from kd_core.runs import RunDir

    _check(args)
    out = Path(args.out) if args.out else default_out("generative-data", resume=False)
    run_dir = RunDir.create(out, {"command": "data build", **{k: v for k, v in vars(args).items()
                                                              if k not in ("func", "command")}})
    try:
        build = _pairs if args.which == "pairs" else _talking
        sections, results, figures = build(args, run_dir.plots)
        run_dir.write_json("results.json", results)
        title = "image-to-image pairs" if args.which == "pairs" else "talking faces"
        write_report(run_dir, f"kd-generative data build: {title}",
                     [("Command", f"```\n{command_line()}\n```"), *sections], plots=figures)
    finally:
        run_dir.close()
    return run_dir.path
