"""Recipes: the ``kd.methods`` registry, YAML loading, ``--set`` overrides and their validation.

Uses the ``hinton-kd`` method that kd-vision registers (installed editable in the workspace venv).
"""

from __future__ import annotations

import pytest
import yaml
from kd_core.errors import RecipeError
from kd_core.recipes import (
    Method,
    RecipeConfig,
    apply_overrides,
    available_recipes,
    find_recipe,
    load_recipe,
    methods,
    parse_override,
)

pytest.importorskip("kd_vision")


def test_hinton_kd_is_registered_with_a_recipe():
    registered = methods()
    assert "hinton-kd" in registered
    method = registered["hinton-kd"]
    assert isinstance(method, Method)
    assert method.domain == "vision"
    assert issubclass(method.config_model, RecipeConfig)
    assert "hinton-kd" in available_recipes()
    assert "hinton-kd" in available_recipes("vision")
    assert "hinton-kd" not in available_recipes("speech")


SHIPPED = yaml.safe_load(available_recipes("vision")["hinton-kd"].read_text())
SHIPPED_ALPHA = float(SHIPPED["kd"]["alpha"])


def test_load_recipe_validates():
    method, config = load_recipe("hinton-kd")
    assert method.name == "hinton-kd"
    assert isinstance(config, method.config_model)
    assert config.method == "hinton-kd"
    shipped = yaml.safe_load(available_recipes("vision")["hinton-kd"].read_text())
    assert config.kd.temperature == float(shipped["kd"]["temperature"])
    assert config.student.epochs == shipped["student"]["epochs"]


def test_overrides_apply_and_are_validated():
    _, config = load_recipe("hinton-kd", ["kd.temperature=2", "student.epochs=3", "seeds=[5]"])
    assert config.kd.temperature == 2.0
    assert isinstance(config.kd.temperature, float)
    assert config.student.epochs == 3
    assert config.seeds == [5]
    # untouched fields keep the recipe's values
    assert config.kd.alpha == SHIPPED_ALPHA
    assert config.teacher.epochs == SHIPPED["teacher"]["epochs"]


def test_unknown_override_key_is_named():
    with pytest.raises(RecipeError) as info:
        load_recipe("hinton-kd", ["kd.temprature=2"])
    assert info.value.argument == "kd.temprature"
    assert "kd.temprature" in str(info.value)
    assert "no such key" in str(info.value)


def test_wrong_type_names_the_field_and_the_value():
    with pytest.raises(RecipeError) as info:
        load_recipe("hinton-kd", ["student.epochs=abc"])
    assert info.value.argument == "student.epochs"
    assert info.value.received == "abc"
    assert "student.epochs" in str(info.value) and "'abc'" in str(info.value)
    assert "integer" in str(info.value)


@pytest.mark.parametrize("value", ["0", "-1"])
def test_nonpositive_temperature_is_rejected(value):
    with pytest.raises(RecipeError, match=r"kd\.temperature") as info:
        load_recipe("hinton-kd", [f"kd.temperature={value}"])
    assert "greater than 0" in str(info.value)


def test_missing_recipe_lists_installed_recipes():
    with pytest.raises(RecipeError) as info:
        load_recipe("hinton-kdd")
    message = str(info.value)
    assert info.value.argument == "--recipe"
    assert "hinton-kdd" in message and "'hinton-kd'" in message
    assert "did you mean" in message
    with pytest.raises(RecipeError, match="hinton-kd"):
        load_recipe("no-such-recipe")
    with pytest.raises(RecipeError, match=r"missing\.yaml"):
        find_recipe("missing.yaml")


def test_recipe_file_by_path(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("method: hinton-kd\nname: mine\nkd:\n  temperature: 3\nstudent:\n  model: student-cnn\n"
                    "  epochs: 2\n  lr: 0.05\n")
    method, config = load_recipe(str(path))
    assert method.name == "hinton-kd"
    assert config.name == "mine"
    assert config.kd.temperature == 3.0
    assert config.student.epochs == 2 and config.student.lr == 0.05
    # unspecified fields take the config model's defaults
    assert config.kd.alpha == SHIPPED_ALPHA
    _, overridden = load_recipe(str(path), ["student.epochs=7"])
    assert overridden.student.epochs == 7
    # the domain filter applies to files as well
    with pytest.raises(RecipeError, match="method"):
        load_recipe(str(path), domain="speech")


def test_unknown_method_in_yaml_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("method: hinton-kdx\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(str(path))
    assert info.value.argument == "method"
    assert "hinton-kdx" in str(info.value) and "hinton-kd" in str(info.value)
    odd = tmp_path / "odd.yaml"
    odd.write_text("method: [hinton-kd]\n")
    with pytest.raises(RecipeError, match="method"):
        load_recipe(str(odd))
    missing = tmp_path / "nomethod.yaml"
    missing.write_text("name: x\n")
    with pytest.raises(RecipeError, match="method"):
        load_recipe(str(missing))


def test_a_directory_named_like_a_recipe_does_not_shadow_it(tmp_path, monkeypatch):
    # e.g. a run directory called "hinton-kd" in the working directory
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hinton-kd").mkdir()
    method, _ = load_recipe("hinton-kd")
    assert method.name == "hinton-kd"
    assert find_recipe("hinton-kd") == available_recipes()["hinton-kd"]


def test_malformed_yaml_and_non_mapping(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("method: [unclosed\n")
    with pytest.raises(RecipeError, match="valid YAML"):
        load_recipe(str(broken))
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(RecipeError, match="mapping"):
        load_recipe(str(listing))


def test_parse_and_apply_overrides():
    assert parse_override("a.b=3") == (["a", "b"], 3)
    assert parse_override("x=[1, 2]") == (["x"], [1, 2])
    assert parse_override("flag=true") == (["flag"], True)
    assert parse_override("name=") == (["name"], "")
    for bad in ("novalue", "=3"):
        with pytest.raises(RecipeError, match="--set"):
            parse_override(bad)
    data = {"kd": {"temperature": 4.0}, "seeds": [0]}
    result = apply_overrides(data, ["kd.temperature=2", "new.deep.key=x"])
    assert result == {"kd": {"temperature": 2}, "seeds": [0], "new": {"deep": {"key": "x"}}}
    assert data == {"kd": {"temperature": 4.0}, "seeds": [0]}  # the input is not modified


def test_a_methods_own_check_reads_as_expected_and_received() -> None:
    """A validator's "…, received X" becomes the error's received value: no dump of the whole section."""
    from kd_core.recipes import Method, RecipeConfig, validate
    from pydantic import BaseModel, model_validator

    class Section(BaseModel):
        low: int = 0
        high: int = 1

        @model_validator(mode="after")
        def _ordered(self) -> Section:
            if self.high < self.low:
                raise ValueError(f"section.high must be at least section.low ({self.low}), received {self.high}")
            return self

    class Config(RecipeConfig):
        section: Section = Section()

    method = Method(name="m", config_model=Config, build=lambda c: None, domain="x")
    with pytest.raises(RecipeError) as info:
        validate(method, {"method": "m", "section": {"low": 5, "high": 2}})
    assert info.value.argument == "section" and info.value.received == 2
    assert "section.high must be at least section.low (5)" in str(info.value) and "'low'" not in str(info.value)
