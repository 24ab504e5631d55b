"""The ``kd-generative`` command: ``distill``, ``recipes`` and ``eval`` for generative models recipes."""

from __future__ import annotations

from collections.abc import Sequence

from kd_core.cli import domain_main


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``kd-generative``."""
    return domain_main("generative", argv)


if __name__ == "__main__":
    raise SystemExit(main())
