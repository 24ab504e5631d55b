"""Progress for long work, as a ``Distiller`` callback or around any loop.

On a terminal: a rich progress bar. Without one (CI, ``nohup``, a pipe): plain lines, at most every
``interval`` seconds per task and whenever a task finishes or an epoch ends, naming the phase, the
epoch, the loss and the time left.
"""

from __future__ import annotations

import datetime
import math
import sys
from collections.abc import Callable
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from kd_core.engine import Callback, Distiller, FitResult, Phase

console = Console(stderr=True)

PLAIN_INTERVAL = 10.0
"""Seconds between two plain progress lines of one task (epoch ends and finished tasks always print)."""


def _clock(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    return str(datetime.timedelta(seconds=round(seconds)))


_SHOWN: list[Progress] = []
"""Displays of ``progress_bar`` started and not yet stopped, innermost last: a ``ProgressCallback`` without a
display of its own adds its bar to the innermost, so that a fit inside a study never starts a second live
display (rich allows one)."""


def current_display() -> Progress | None:
    """The innermost live display of ``progress_bar`` (a study's), if any: long work inside it adds its bar there
    rather than start a second live display."""
    return _SHOWN[-1] if _SHOWN else None


class ShownProgress(Progress):
    """A rich ``Progress`` that records itself in ``_SHOWN`` while started."""

    def start(self) -> None:
        """Start the display (as rich does) and record it as the innermost."""
        super().start()
        _SHOWN.append(self)

    def stop(self) -> None:
        """Stop the display (as rich does) and forget it."""
        super().stop()
        if self in _SHOWN:
            _SHOWN.remove(self)


class PlainProgress(ShownProgress):
    """A rich ``Progress`` that draws nothing and prints plain lines instead (for logs, pipes and CI).

    A line is printed when ``interval`` seconds have passed since the task's last line, when the task
    completes, and on ``print_line``. ``stream``: where lines go (default ``sys.stderr`` at the time);
    ``get_time``: the clock (a fake one in tests).
    """

    def __init__(self, *columns: Any, stream: TextIO | None = None, interval: float = PLAIN_INTERVAL,
                 get_time: Callable[[], float] | None = None, **kwargs: Any) -> None:
        kwargs.pop("disable", None)
        super().__init__(*columns, disable=True, get_time=get_time, **kwargs)
        if interval < 0:
            raise ValueError(f"interval: expected seconds >= 0, received {interval!r}")
        self.stream = stream
        self.interval = interval
        self._last_line: dict[TaskID, float] = {}
        self._finished: set[TaskID] = set()

    def add_task(self, description: str, start: bool = True, total: float | None = 100.0, completed: int = 0,
                 visible: bool = True, **fields: Any) -> TaskID:
        """Add a task (as rich does); its first line comes after ``interval`` seconds or at its end."""
        task_id = super().add_task(description, start=start, total=total, completed=completed, visible=visible,
                                   **fields)
        self._last_line[task_id] = self.get_time()
        return task_id

    def update(self, task_id: TaskID, *, line: bool | None = None, **kwargs: Any) -> None:  # type: ignore[override]
        """Update a task (as rich does), then print a line if one is due (``line``: True always, False never)."""
        super().update(task_id, **kwargs)
        if line:
            if self._tasks[task_id].finished:
                self._finished.add(task_id)
            self.print_line(task_id)
        elif line is None:
            self._maybe_print(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        """Advance a task (as rich does), then print a line if one is due."""
        super().advance(task_id, advance)
        self._maybe_print(task_id)

    def _maybe_print(self, task_id: TaskID) -> None:
        task = self._tasks[task_id]
        if task.finished and task_id not in self._finished:
            self._finished.add(task_id)
            self.print_line(task_id)
        elif self.get_time() - self._last_line.get(task_id, -math.inf) >= self.interval:
            self.print_line(task_id)

    def line(self, task_id: TaskID) -> str:
        """The plain line of a task: description, n/total, its info, elapsed time and ETA."""
        task = self._tasks[task_id]
        done = f"{task.completed:g}/{task.total:g}" if task.total is not None else f"{task.completed:g}"
        info = str(task.fields.get("info", "")).strip()
        remaining = 0.0 if task.finished else task.time_remaining
        parts = [f"{task.description}: {done}", info, f"elapsed {_clock(task.elapsed)}", f"ETA {_clock(remaining)}"]
        return "  ".join(part for part in parts if part)

    def print_line(self, task_id: TaskID) -> None:
        """Print a task's line now."""
        self._last_line[task_id] = self.get_time()
        print(self.line(task_id), file=self.stream or sys.stderr, flush=True)


def progress_bar(transient: bool = False, stream: TextIO | None = None, interval: float = PLAIN_INTERVAL,
                 get_time: Callable[[], float] | None = None) -> Progress:
    """The project's standard progress display (description, bar, n/total, info, elapsed, remaining).

    A rich bar on stderr when it is a terminal (and no ``stream`` is given); otherwise a ``PlainProgress``
    printing plain lines to ``stream`` (default stderr) at most every ``interval`` seconds per task.
    """
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn())
    if stream is None and console.is_terminal:
        return ShownProgress(*columns, console=console, transient=transient, get_time=get_time)
    return PlainProgress(*columns, stream=stream, interval=interval, get_time=get_time)


class ProgressCallback(Callback):
    """One bar (or plain lines, without a terminal) per phase: the epoch, the running loss, the last validation metric.

    ``stream``, ``interval``: as for ``progress_bar``, when the callback makes its own.
    """

    def __init__(self, label: str = "", progress: Progress | None = None, stream: TextIO | None = None,
                 interval: float = PLAIN_INTERVAL) -> None:
        self.label = label
        self.progress = progress
        self._given = progress is not None
        self._owned = False
        self._stream = stream
        self._interval = interval
        self._task: Any = None
        self._epochs = 0
        self._loss = float("nan")

    def on_fit_start(self, distiller: Distiller) -> None:
        if self._given:
            return
        shown = current_display()
        if shown is not None and self._stream is None:  # inside another display (a study's): add a bar to it
            self.progress, self._owned = shown, False
        else:
            self.progress, self._owned = progress_bar(stream=self._stream, interval=self._interval), True
        if self._owned:
            self.progress.start()

    def on_phase_start(self, distiller: Distiller, phase: Phase, total_steps: int) -> None:
        name = f"{self.label} {phase.name}".strip()
        self._epochs = phase.epochs
        self._task = self.progress.add_task(name, total=total_steps, info="")

    def _epoch(self, epoch: float) -> str:
        return f"epoch {max(1, math.ceil(epoch - 1e-9))}/{self._epochs}"

    def on_step_end(self, distiller: Distiller, logs: dict[str, float]) -> None:
        self._loss = logs.get("loss/total", float("nan"))
        info = f"{self._epoch(logs.get('epoch', 1))} loss {self._loss:.4f}"
        if isinstance(self.progress, PlainProgress):  # an epoch's last step: its line comes at the epoch's end
            epoch_done = float(logs.get("epoch", 0.5)).is_integer()
            self.progress.update(self._task, advance=1, info=info, line=False if epoch_done else None)
        else:
            self.progress.update(self._task, advance=1, info=info)

    def on_epoch_end(self, distiller: Distiller, logs: dict[str, float]) -> None:
        info = f"{self._epoch(logs.get('epoch', 1))} loss {self._loss:.4f}"
        if distiller.monitor in logs:
            info += f" {distiller.monitor} {logs[distiller.monitor]:.4f}"
        if isinstance(self.progress, PlainProgress):
            self.progress.update(self._task, info=info, line=True)
        else:
            self.progress.update(self._task, info=info)

    def on_fit_end(self, distiller: Distiller, result: FitResult) -> None:
        self.close()

    def close(self) -> None:
        """Stop the display this callback started, if it started one (a fit that failed midway included)."""
        if self._owned and self.progress is not None:
            self.progress.stop()
            self._owned = False
