"""What the generative study recipes share: the check of a recipe's ``arms`` list, and the one task they keep built
(the report and ``eval`` reuse a recipe's task and its teacher instead of building them again)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from kd_core.datacache import data_home, digest
from kd_core.recipes import RunContext
from kd_core.study_recipe import StudyRecipe
from kd_core.task import Task

__all__ = ["check_arms", "latest_task"]

_LATEST: dict[str, Task] = {}


def check_arms(value: list[str], known: Sequence[str]) -> list[str]:
    """``value`` if it names distinct arms among ``known``, else a ``ValueError`` (pydantic makes it the recipe's
    error naming ``arms``)."""
    unknown = [a for a in value if a not in known]
    if unknown or len(set(value)) != len(value):
        raise ValueError(f"distinct arm names among {list(known)}, received {value!r}")
    return value


def latest_task(config: StudyRecipe, context: RunContext, build: Callable[[], Task]) -> Task:
    """``build()``'s task, built once per configuration, device and data home; only the latest task is kept (a
    task holds its data and teacher)."""
    memo = digest(config=json.loads(config.model_dump_json()), device=context.device, home=str(data_home()))
    if memo not in _LATEST:
        _LATEST.clear()
        _LATEST[memo] = build()
    return _LATEST[memo]
