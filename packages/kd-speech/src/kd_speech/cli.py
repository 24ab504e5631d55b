"""The ``kd-speech`` command: kd-core's ``distill``, ``recipes`` and ``eval``, and ``data build`` (the spoken-command
set, synthesized offline with espeak-ng and flite, with a report)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from kd_core.cli import domain_main, domain_parser, one_line_warnings
from kd_core.errors import KDError


def build_parser() -> argparse.ArgumentParser:
    """kd-core's domain parser plus ``data``."""
    from kd_speech.commands.data_build import add_arguments

    parser = domain_parser("speech")
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    add_arguments(sub.add_parser("data", help="build the spoken-command set (espeak-ng, flite) and report on it"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``kd-speech``: exit status 0, or 2 with a one-line error."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.command != "data":
        return domain_main("speech", argv)
    try:
        with one_line_warnings():
            from kd_speech.commands.data_build import run

            run_dir = run(args)
    except KDError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"run directory: {run_dir}")
    print(f"report: {Path(run_dir) / 'report.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
