"""The ``kd-speech`` command: ``distill``, ``recipes`` and ``eval`` for speech recipes."""

from __future__ import annotations

from collections.abc import Sequence

from kd_core.cli import domain_main


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``kd-speech``."""
    return domain_main("speech", argv)


if __name__ == "__main__":
    raise SystemExit(main())
