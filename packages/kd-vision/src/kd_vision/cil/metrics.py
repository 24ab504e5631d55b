"""Class-incremental metrics over an accuracy matrix.

``a[i][j]`` is the accuracy on the test images of task j after training task i (j ≤ i), with the
classifier choosing among **all classes seen so far** (class-incremental, no task id). Rows may be
shorter than the stream: row i holds i + 1 entries.

- Accuracy after task i (Chaudhry et al., "Riemannian Walk for Incremental Learning", ECCV 2018):
  A_i = (1 / (i + 1)) Σ_{j ≤ i} a[i][j].
- **Average incremental accuracy** (Rebuffi et al., iCaRL, CVPR 2017): (1 / T) Σ_i A_i over the T tasks,
  the first one included.
- **Final accuracy**: A_{T−1}.
- **Forgetting** (Chaudhry et al. 2018): for each old task j < T − 1, f_j = max_{i < T−1} a[i][j] − a[T−1][j],
  the drop from its best accuracy before the last task; forgetting is the mean of f_j (0 for one task).
"""

from __future__ import annotations

from collections.abc import Sequence

from kd_core.errors import ConfigError

__all__ = ["accuracy_after_each_task", "average_incremental_accuracy", "final_accuracy", "forgetting", "summary"]


def _check(matrix: Sequence[Sequence[float]]) -> list[list[float]]:
    rows = [list(map(float, row)) for row in matrix]
    if not rows or any(len(row) != i + 1 for i, row in enumerate(rows)):
        raise ConfigError("matrix", "a lower-triangular accuracy matrix (row i holds i + 1 accuracies)",
                          [len(row) for row in rows])
    return rows


def accuracy_after_each_task(matrix: Sequence[Sequence[float]]) -> list[float]:
    """A_i, the mean accuracy over the tasks seen after task i, for every i."""
    return [sum(row) / len(row) for row in _check(matrix)]


def average_incremental_accuracy(matrix: Sequence[Sequence[float]]) -> float:
    """The mean of A_i over all tasks."""
    after = accuracy_after_each_task(matrix)
    return sum(after) / len(after)


def final_accuracy(matrix: Sequence[Sequence[float]]) -> float:
    """A_{T−1}: the mean accuracy over all tasks after the last one."""
    return accuracy_after_each_task(matrix)[-1]


def forgetting(matrix: Sequence[Sequence[float]]) -> float:
    """The mean over old tasks of (best earlier accuracy − final accuracy)."""
    rows = _check(matrix)
    last = len(rows) - 1
    if last == 0:
        return 0.0
    drops = [max(rows[i][j] for i in range(j, last)) - rows[last][j] for j in range(last)]
    return sum(drops) / len(drops)


def summary(matrix: Sequence[Sequence[float]]) -> dict[str, float]:
    """Average incremental accuracy, final accuracy and forgetting of one run."""
    return {"average_incremental_accuracy": average_incremental_accuracy(matrix),
            "final_accuracy": final_accuracy(matrix), "forgetting": forgetting(matrix)}
