"""Tap paths: resolution with nearest-name errors, kind prefixes, wrappers (DDP, torch.compile), logits."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
from kd_core.errors import TapError
from kd_core.taps import TapPath, TapSet, module_names, resolve, select_logits, unwrap
from torch import nn


class Attention(nn.Module):
    """Returns (output, weights) like a Hugging Face attention module with output_attentions."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.query = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = self.query(x)
        weights = torch.softmax(q @ x.transpose(-1, -2), dim=-1)
        return weights @ x, weights


class Block(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.attn = Attention(dim)
        self.mlp = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.attn(x)
        return torch.relu(self.mlp(out)) + x


class Net(nn.Module):
    def __init__(self, dim: int = 4, classes: int = 3) -> None:
        super().__init__()
        self.layers = nn.ModuleList([Block(dim), Block(dim)])
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.head(x.mean(1))


def _net() -> Net:
    torch.manual_seed(0)
    return Net()


def _input() -> torch.Tensor:
    return torch.randn(2, 5, 4, generator=torch.Generator().manual_seed(1))


PATHS = ["layers.0", "out:layers.1.mlp", "in:head", "attn:layers.1.attn"]


def test_unknown_path_lists_nearest_names():
    model = _net()
    with pytest.raises(TapError) as info:
        resolve(model, "layer.1")
    message = str(info.value)
    assert "layer.1" in message
    assert "nearest names" in message and "'layers.1'" in message
    assert info.value.argument == "tap"
    assert isinstance(info.value, KeyError)  # still a KeyError, but with a readable message
    assert not message.startswith('"')
    # TapSet validates at construction, before any forward pass
    with pytest.raises(TapError, match=r"layers\.0\.mlp"):
        TapSet(model, ["layers.0.mpl"])


def test_bad_kind_prefix_and_empty_paths():
    with pytest.raises(TapError, match="kind prefix"):
        TapPath.parse("weights:layers.0")
    for bad in ("", None, "out:"):
        with pytest.raises(TapError):
            resolve(_net(), bad)  # type: ignore[arg-type]


def test_parse_kinds():
    assert TapPath.parse("layers.0") == TapPath("out", "layers.0")
    assert TapPath.parse("in:head") == TapPath("in", "head")
    assert TapPath.parse("attn:layers.1.attn") == TapPath("attn", "layers.1.attn")
    assert resolve(_net(), "attn:layers.1.attn").__class__ is Attention
    assert "layers.1.attn.query" in module_names(_net())


def _reference(model: Net, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The tapped values computed by hand, without hooks."""
    h0 = model.layers[0](x)
    attn_out, weights = model.layers[1].attn(h0)
    mlp = model.layers[1].mlp(attn_out)
    h1 = torch.relu(mlp) + h0
    return {"layers.0": h0, "out:layers.1.mlp": mlp, "in:head": h1.mean(1),
            "attn:layers.1.attn": weights, "logits": model.head(h1.mean(1))}


def test_kind_prefixes_capture_the_right_values():
    model, x = _net(), _input()
    taps = TapSet(model, [*PATHS, "logits"])
    assert taps.paths == PATHS  # "logits" is the model's own output, not a hook
    with torch.no_grad():
        got = taps.run(model, x)
        expected = _reference(model, x)
    assert set(got) == {*PATHS, "logits"}
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value)
    assert got["attn:layers.1.attn"].shape == (2, 5, 5)
    # hooks are removed afterwards
    assert all(not m._forward_hooks for m in model.modules())


def test_in_tap_on_a_module_called_with_keywords():
    class Keywords(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Linear(4, 4)
            self.head = nn.Linear(4, 3)

        def forward(self, x):
            return self.head(input=self.body(x))  # called the way HF layers call (hidden_states=...)

    torch.manual_seed(0)
    model, x = Keywords(), torch.randn(2, 4)
    with torch.no_grad():
        got = TapSet(model, ["in:head"]).run(model, x)
        torch.testing.assert_close(got["in:head"], model.body(x))


def test_attn_on_a_module_without_weights_is_an_error():
    model = _net()
    taps = TapSet(model, ["attn:layers.0.mlp"])
    with pytest.raises(TapError, match="attention"):
        taps.run(model, _input())
    assert all(not m._forward_hooks for m in model.modules())


def test_tap_on_a_module_that_does_not_run():
    class Skips(Net):
        def forward(self, x):
            return self.head(self.layers[0](x).mean(1))

    torch.manual_seed(0)
    model = Skips()
    with pytest.raises(TapError, match=r"layers\.1"):
        TapSet(model, ["layers.1"]).run(model, _input())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_taps_through_distributed_data_parallel():
    model, x = _net(), _input()
    with torch.no_grad():
        expected = TapSet(model, PATHS).run(model, x)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    try:
        wrapped = nn.parallel.DistributedDataParallel(model)
        assert unwrap(wrapped) is model
        assert resolve(wrapped, "layers.1.mlp") is model.layers[1].mlp
        with pytest.raises(TapError, match=r"'layers\.1'"):
            resolve(wrapped, "layer.1")
        with torch.no_grad():
            got = TapSet(wrapped, PATHS).run(wrapped, x)
    finally:
        dist.destroy_process_group()
    for key in [*PATHS, "logits"]:
        torch.testing.assert_close(got[key], expected[key])


def test_taps_through_torch_compile():
    model, x = _net(), _input()
    with torch.no_grad():
        expected = TapSet(model, PATHS).run(model, x)
    compiled = torch.compile(model, backend="eager")
    assert unwrap(compiled) is model
    assert resolve(compiled, "layers.1.mlp") is model.layers[1].mlp
    assert module_names(compiled) == module_names(model)
    taps = TapSet(compiled, PATHS)
    with torch.no_grad():
        got = taps.run(compiled, x)
    assert set(got) == {*PATHS, "logits"}
    for key in [*PATHS, "logits"]:
        torch.testing.assert_close(got[key], expected[key])
    # a second call with the hooks open again still captures (no stale compiled graph without hooks)
    with torch.no_grad():
        again = taps.run(compiled, x * 2)
        plain = TapSet(model, PATHS).run(model, x * 2)
    torch.testing.assert_close(again["layers.0"], plain["layers.0"])


def test_unwrap_strips_nested_wrappers():
    model = _net()
    fake_ddp = type("DistributedDataParallel", (nn.Module,), {})()
    fake_ddp.module = torch.compile(model, backend="eager")
    assert unwrap(fake_ddp) is model
    assert unwrap(model) is model


def test_select_logits_forms():
    t = torch.randn(2, 3)
    assert select_logits(t) is t
    assert select_logits(SimpleNamespace(logits=t)) is t
    assert select_logits((t, torch.zeros(1))) is t
    assert select_logits([t]) is t
    assert select_logits({"logits": t, "hidden": None}) is t
    with pytest.raises(TapError, match="logits"):
        select_logits("nope")
    with pytest.raises(TapError):
        select_logits(())
