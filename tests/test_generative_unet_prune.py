"""kd-generative's Pix2Pix U-Net through kd-edge's U-Net pruning plugins (``kd.unet_pruning``, the protocol of
``kd_core.unet_pruning``), wired only here: the sensitivity scan finds a planted redundant layer, global pruning hits
a parameter target, and kd-generative's ``PrunedStudents`` builds trainable pruned students from a frozen teacher."""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import pytest
import torch
from kd_core.errors import ConfigError
from kd_core.metrics import count_parameters
from kd_core.structure import unet_structure
from kd_core.unet_pruning import NAMES, unet_pruning
from kd_generative.methods.unet_prune_report import placed_rows, sensitivity_ratios
from kd_generative.methods.unet_prune_students import PrunedStudents
from kd_generative.models.unet import build_unet
from torch import nn

PLANTED = "down.2.1"  # the conv of level 2's encoder, in a depth-4 U-Net
DEAD = slice(0, 24)   # 24 of its 32 filters (75 %) contribute nothing


def _generator(depth: int = 4, base: int = 8) -> nn.Module:
    torch.manual_seed(0)
    return build_unet(3, 3, depth=depth, base=base, image_size=32).eval()


@torch.no_grad()
def _plant_dead_filters(model: nn.Module) -> None:
    """Make filters ``DEAD`` of ``PLANTED`` dead: zero weights and bias, a BatchNorm that outputs 0 for them (γ = β =
    0), and zero input weights wherever they are read (the next encoder; the level's decoder, skip first). They add
    nothing to the output, and their L1 importance is 0, so pruning up to 75 % of this layer changes nothing."""
    conv, norm = model.down[2][1], model.down[2][2]
    conv.weight[DEAD] = 0.0
    conv.bias[DEAD] = 0.0
    norm.weight[DEAD] = 0.0
    norm.bias[DEAD] = 0.0
    model.down[3][1].weight[:, DEAD] = 0.0  # Conv2d: [out, in, k, k]
    model.up[2][1].weight[DEAD] = 0.0       # ConvTranspose2d: [in, out, k, k]; the skip is the first 32 inputs


#: How kd-generative calls each plugin (the keywords of the kd_core.unet_pruning protocols).
CALLS = {"sensitivity": ((1, 2), {"ratios": (0.5,), "layers": None, "importance": "l1", "score_fn": None}),
         "inner": ((1, 2), {"ratio": 0.5, "levels": 1, "importance": "l1", "structure": None}),
         "cut": ((1,), {"levels": 1, "example_inputs": 2, "structure": None}),
         "global": ((1, 2, 3), {"importance": "l1", "tolerance": 0.02, "global_pruning": True})}


def test_kd_edge_publishes_every_plugin_with_the_protocols_arguments() -> None:
    plugins = unet_pruning()
    assert set(plugins) == set(NAMES) == set(CALLS)
    for name, (args, kwargs) in CALLS.items():
        inspect.signature(plugins[name]).bind(*args, **kwargs)  # a TypeError if the contract drifted


def test_the_scan_ranks_a_planted_redundant_layer_last() -> None:
    model = _generator()
    x = torch.randn(4, 3, 32, 32)
    before = model(x)
    _plant_dead_filters(model)
    torch.testing.assert_close(model(x), before, atol=1e-2, rtol=0)  # still a working generator
    scan = unet_pruning(["sensitivity"])["sensitivity"]
    rows = scan(model, x, ratios=(0.5, 0.75))
    for ratio in (0.5, 0.75):
        ranked = sorted((r for r in rows if r["ratio"] == ratio), key=lambda r: r["score"])
        assert ranked[0]["layer"] == PLANTED and ranked[0]["params_kept"] < 1.0  # it was pruned, and changed nothing
        assert ranked[0]["score"] < 1e-7 and ranked[1]["score"] > 1e-5  # unplanted, down.3.1 would be last
    placed = placed_rows(rows, unet_structure(model))
    assert [r["layer"] for r in placed if r["ratio"] == 0.5] == ["down.0.0", "down.1.1", "down.2.1", "down.3.1",
                                                                  "up.3.1", "up.2.1", "up.1.1"]
    assert set(sensitivity_ratios(placed, depth=4, inner_levels=2)) == {0.5, 0.75}


def test_global_pruning_reaches_the_inner_arms_parameter_count() -> None:
    plugins = unet_pruning(["inner", "global"])
    x = torch.randn(2, 3, 32, 32)
    inner = _generator(5, 16)  # the recipes' teacher architecture
    plugins["inner"](inner, x, ratio=0.75, levels=3)
    target = count_parameters(inner)
    teacher_params = count_parameters(_generator(5, 16))
    assert teacher_params / target >= 7  # the spec's compression
    for global_pruning in (True, False):
        model = _generator(5, 16)
        summary = plugins["global"](model, x, target, tolerance=0.02, global_pruning=global_pruning)
        assert abs(count_parameters(model) - target) <= 0.02 * target
        assert summary.params_after == count_parameters(model) and model(x).shape == x.shape
    widths = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert widths[0] < 16  # uniform pruning thinned the outermost encoder too, unlike inner pruning
    with pytest.raises(ConfigError) as info:  # a target above the model's size
        plugins["global"](_generator(5, 16), x, teacher_params + 1)
    assert info.value.argument == "target_params"


def test_pruned_students_from_a_frozen_teacher_are_trainable_and_smaller() -> None:
    teacher = _generator()
    teacher.requires_grad_(False)  # what a study's FrozenTeacher does to the shared teacher
    items = [{"input": torch.randn(3, 32, 32)} for _ in range(6)]
    fake_task = SimpleNamespace(teacher=lambda: teacher, data=SimpleNamespace(train=items, val=items))
    settings = {"inner": {"ratio": 0.5, "levels": 2}, "cut": {"levels": 1, "calibration": 4},
                "global": {"params_fraction": None, "tolerance": 0.05}}
    sensitivity = {"ratios": [0.5], "score": "l1", "inputs": 4}
    prepared = PrunedStudents(fake_task, unet_pruning(), settings, sensitivity=sensitivity)  # type: ignore[arg-type]
    students = {arm: prepared.student(arm) for arm in settings}
    full = count_parameters(teacher)
    assert all(count_parameters(s) < full for s in students.values())
    assert all(p.requires_grad for s in students.values() for p in s.parameters())
    assert students["cut"].depth == 3 and abs(prepared.params("global") - prepared.params("inner")) <= 0.05 * \
        prepared.params("inner")
    assert len(prepared.scan()) == 7 and all(r["params_kept"] < 1 for r in prepared.scan())
    assert not any(p.requires_grad for p in teacher.parameters())  # the teacher itself is left as it was
    assert students["inner"] is not prepared.student("inner")  # every run gets its own copy
