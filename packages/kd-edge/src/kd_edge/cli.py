"""The ``kd-edge`` command: ``distill``, ``recipes`` and ``eval`` for edge deployment recipes."""

from __future__ import annotations

from collections.abc import Sequence

from kd_core.cli import domain_main


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``kd-edge``."""
    return domain_main("edge", argv)


if __name__ == "__main__":
    raise SystemExit(main())
