"""The ``kd-vision`` command: ``distill``, ``recipes`` and ``eval`` for vision recipes."""

from __future__ import annotations

from collections.abc import Sequence

from kd_core.cli import domain_main


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``kd-vision``."""
    return domain_main("vision", argv)


if __name__ == "__main__":
    raise SystemExit(main())
