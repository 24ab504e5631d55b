"""A rich progress bar for long work, as a ``Distiller`` callback or around any loop."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from kd_core.engine import Callback, Distiller, FitResult, Phase

console = Console(stderr=True)


def progress_bar(transient: bool = False) -> Progress:
    """The project's standard progress bar (description, bar, n/total, elapsed, remaining)."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=console, transient=transient, disable=not console.is_terminal)


class ProgressCallback(Callback):
    """Shows one bar per phase with the running loss and the last validation metric."""

    def __init__(self, label: str = "", progress: Progress | None = None) -> None:
        self.label = label
        self.progress = progress
        self._owned = progress is None
        self._task: Any = None

    def on_fit_start(self, distiller: Distiller) -> None:
        if self.progress is None:
            self.progress = progress_bar()
        if self._owned:
            self.progress.start()

    def on_phase_start(self, distiller: Distiller, phase: Phase, total_steps: int) -> None:
        name = f"{self.label} {phase.name}".strip()
        self._task = self.progress.add_task(name, total=total_steps, info="")

    def on_step_end(self, distiller: Distiller, logs: dict[str, float]) -> None:
        self.progress.update(self._task, advance=1, info=f"loss {logs.get('loss/total', float('nan')):.4f}")

    def on_epoch_end(self, distiller: Distiller, logs: dict[str, float]) -> None:
        if distiller.monitor in logs:
            self.progress.update(self._task, info=f"{distiller.monitor} {logs[distiller.monitor]:.4f}")

    def on_fit_end(self, distiller: Distiller, result: FitResult) -> None:
        if self._owned:
            self.progress.stop()
