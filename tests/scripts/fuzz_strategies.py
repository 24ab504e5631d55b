"""Hypothesis strategies the fuzzing drills share: recipe overrides and values, as a user might type them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st


def field_paths(data: Any, prefix: str = "") -> list[str]:
    """Every dotted key path of a recipe mapping (``teacher.epochs``, ``seeds``, ...)."""
    if not isinstance(data, dict):
        return [prefix.rstrip(".")] if prefix else []
    paths = [prefix.rstrip(".")] if prefix else []
    for key, value in data.items():
        paths += field_paths(value, f"{prefix}{key}.")
    return paths


def recipe_fields(recipes: dict[str, Path]) -> list[str]:
    """The dotted field paths used by any of ``recipes``, sorted."""
    return sorted({p for path in recipes.values() for p in field_paths(yaml.safe_load(path.read_text()) or {})})


SCALARS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, 2, -1, 3, 10**9]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["nan", ".nan", ".inf", "-.inf", "1e400", "0.0", "-0.5", "1e-9"]),
    st.booleans(),
    st.none(),
    st.text(max_size=12),
    st.sampled_from(["cpu", "cuda", "auto", "fp16", "bf16", "mnist5k", "teacher-cnn", "student-cnn", "[", "{",
                     ":", "- x", "!!python/object:os.system", "*a", "&a [1]", "~", "''", "[1, [2]]", "{a: 1}"]),
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=4), st.dictionaries(st.text(max_size=6), SCALARS, max_size=3))


def as_text(value: Any) -> str:
    """A value as one ``--set`` right-hand side: raw strings as typed, the rest as flow YAML."""
    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def overrides(fields: list[str]) -> st.SearchStrategy[list[str]]:
    """Lists of ``key=value`` overrides: mostly real field paths, some mangled keys, some bare garbage."""
    keys = st.one_of(st.sampled_from(fields), st.sampled_from(fields).map(lambda f: f + ".x"),
                     st.text(max_size=15), st.sampled_from(["", ".", "a..b", "seed", "method", "name", "=x"]))
    pair = st.builds(lambda k, v: f"{k}={as_text(v)}", keys, VALUES)
    return st.lists(st.one_of(pair, pair, pair, st.text(max_size=20)), max_size=4)
