"""The ``kd-speech`` command: kd-core's ``distill``, ``recipes`` and ``eval``; ``data build`` (the spoken-command
set, synthesized offline with espeak-ng and flite, with a report); ``rescore --nbest|--lattice --lm LM`` (pocketsphinx
decodes rescored with a word LM, WER before and after)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from kd_core.cli import domain_main, domain_parser, run_command


def build_parser() -> argparse.ArgumentParser:
    """kd-core's domain parser plus ``data`` and ``rescore``."""
    from kd_speech.commands import data_build, rescore

    parser = domain_parser("speech")
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    data_build.add_arguments(sub.add_parser("data", help="build the spoken-command set (espeak-ng, flite) and report "
                                                         "on it"))
    rescore.add_arguments(sub.add_parser("rescore", help="decode audio with pocketsphinx and rescore its n-best lists "
                                                         "or lattices with a word LM: WER before and after"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``kd-speech``: exit status 0, or 2 with a one-line error."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.command not in ("data", "rescore"):
        return domain_main("speech", argv)
    return run_command(lambda: _run(args))


def _run(args: argparse.Namespace) -> Path:
    """``data`` or ``rescore``: the run directory."""
    if args.command == "data":
        from kd_speech.commands.data_build import run
    else:
        from kd_speech.commands.rescore import run
    return Path(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
