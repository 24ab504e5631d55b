"""Drill: property-based fuzzing of recipes (hypothesis). The only exceptions allowed are ``KDError``s with a message.

Every installed domain's recipes (kd-vision, kd-nlu, ...) are loaded with random ``--set`` overrides
(real field paths with wrong types, NaN/inf, huge or negative numbers, YAML oddities; mangled keys;
garbage) and, when they validate, built into a plan (``method.build``; the plan is not run). Random
YAML recipe files go through the same path. 100 examples per property in CI (derandomized, so CI is
reproducible); 1,000 each, freshly random, in the slow variant.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kd_core.errors import KDError
from kd_core.recipes import available_recipes, domains, load_recipe

sys.path.insert(0, str(Path(__file__).resolve().parent / "scripts"))

import fuzz_strategies as fs  # tests/scripts, put on the path just above

RECIPES = {(domain, name): path for domain in sorted(domains()) for name, path in available_recipes(domain).items()}
FIELDS = fs.recipe_fields(dict(zip((n for _, n in RECIPES), RECIPES.values())))
CI = settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _load_and_build(recipe: str, overrides: list[str], domain: str | None) -> None:
    """What ``kd-<domain> distill`` does before it runs anything; only a ``KDError`` may come out."""
    try:
        method, config = load_recipe(recipe, overrides, domain=domain)
        method.build(config)
    except KDError as err:
        assert str(err).strip(), "a KDError without a message"


recipe_choice = st.sampled_from(sorted(RECIPES))


def _check_overrides(choice: tuple[str, str], overrides: list[str]) -> None:
    domain, name = choice
    _load_and_build(name, overrides, domain)


def _check_file(tmp: Path, data: object) -> None:
    path = tmp / "recipe.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    _load_and_build(str(path), [], None)


def _recipe_documents() -> st.SearchStrategy[object]:
    """Recipe files: a real recipe with fields replaced or dropped, random mappings, or raw text."""
    def mutate(choice: tuple[str, str], drops: list[str], sets: list[tuple[str, object]]) -> dict:
        data = yaml.safe_load(RECIPES[choice].read_text())
        for key in drops:
            data.pop(key, None)
        for key, value in sets:
            data[key] = value
        return data

    top = sorted({f.split(".")[0] for f in FIELDS})
    return st.one_of(
        st.builds(mutate, recipe_choice, st.lists(st.sampled_from(top), max_size=2),
                  st.lists(st.tuples(st.sampled_from(top), fs.VALUES), max_size=3)),
        st.dictionaries(st.sampled_from(["method", *top]), fs.VALUES, max_size=5),
        st.text(max_size=60), st.sampled_from(["", "[]", "- a\n- b", "method: [", ":::", "\t", "method: hinton-kd"]),
    )


def test_there_are_recipes_to_fuzz():
    assert len(RECIPES) >= 10 and len(FIELDS) >= 20


@CI
@given(choice=recipe_choice, overrides=fs.overrides(FIELDS))
def test_fuzzed_overrides_raise_only_kd_errors(choice, overrides):
    _check_overrides(choice, overrides)


@CI
@given(data=_recipe_documents())
def test_fuzzed_recipe_files_raise_only_kd_errors(tmp_path_factory, data):
    _check_file(tmp_path_factory.mktemp("recipe"), data)


@pytest.mark.slow
@SLOW
@given(choice=recipe_choice, overrides=fs.overrides(FIELDS))
def test_fuzzed_overrides_raise_only_kd_errors_1000(choice, overrides):
    _check_overrides(choice, overrides)


@pytest.mark.slow
@SLOW
@given(data=_recipe_documents())
def test_fuzzed_recipe_files_raise_only_kd_errors_1000(tmp_path_factory, data):
    _check_file(tmp_path_factory.mktemp("recipe"), data)
