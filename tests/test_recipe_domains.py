"""A recipe or method name that two installed domains share (``annealing-kd``: vision and nlu) is never
resolved to the wrong domain: by name without a domain it is an error naming both CLIs; by file, the
domain whose package ships the file wins."""

from __future__ import annotations

import pytest
from kd_core.errors import RecipeError
from kd_core.recipes import find_recipe, load_recipe


def test_a_shared_recipe_name_needs_a_domain() -> None:
    with pytest.raises(RecipeError, match=r"kd-nlu or kd-vision"):
        load_recipe("annealing-kd")
    assert load_recipe("annealing-kd", domain="nlu")[0].domain == "nlu"
    assert load_recipe("annealing-kd", domain="vision")[0].domain == "vision"


@pytest.mark.parametrize("domain", ["nlu", "vision"])
def test_a_shipped_recipe_file_loads_with_its_own_domains_method(domain: str) -> None:
    method, config = load_recipe(str(find_recipe("annealing-kd", domain)))
    assert method.domain == domain and type(config).__module__.startswith(f"kd_{domain}")
