"""The ``kd-nlu`` command: ``distill``, ``recipes`` and ``eval`` for language understanding recipes."""

from __future__ import annotations

from collections.abc import Sequence

from kd_core.cli import domain_main


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``kd-nlu``."""
    return domain_main("nlu", argv)


if __name__ == "__main__":
    raise SystemExit(main())
