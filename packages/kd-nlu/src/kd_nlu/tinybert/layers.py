"""Where an encoder keeps its embeddings, layers and self-attention modules, and TinyBERT's layer map.

Tap paths are found from the model and its config, not hard-coded to BERT: the layer stack is the
``nn.ModuleList`` with ``config.num_hidden_layers`` blocks, the self-attention module is the first
submodule of a block with query and key projections, and the embeddings are the ``embeddings`` module
beside the stack. This covers BERT, RoBERTa, ELECTRA, MiniLM, DistilBERT and ALBERT-like layouts, with
or without a task head (``bert.encoder.layer.3`` or ``encoder.layer.3``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from kd_core.errors import ConfigError
from kd_core.transformer_losses import query_key
from torch import nn


def uniform_layer_map(student_layers: int, teacher_layers: int) -> list[int]:
    """g(m) = m·N/M for student layers m = 1..M (rounded up when M does not divide N); g(M) = N."""
    for name, value in (("student_layers", student_layers), ("teacher_layers", teacher_layers)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(name, "a positive layer count", value)
    return [math.ceil(m * teacher_layers / student_layers) for m in range(1, student_layers + 1)]


def check_layer_map(layer_map: Sequence[int] | None, student_layers: int, teacher_layers: int) -> list[int]:
    """The layer map to use: ``layer_map`` validated (one teacher layer in 1..N per student layer), or uniform."""
    if layer_map is None:
        return uniform_layer_map(student_layers, teacher_layers)
    values = list(layer_map)
    if len(values) != student_layers:
        raise ConfigError("layer_map", f"one teacher layer per student layer ({student_layers} entries)", values)
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= teacher_layers]
    if bad:
        raise ConfigError("layer_map", f"teacher layers in 1..{teacher_layers} (0 is the embeddings, mapped "
                          "to the student's embeddings on its own)", values, hint=f"out of range: {bad}")
    return values


@dataclass(frozen=True)
class EncoderLayout:
    """Tap paths of an encoder: ``embeddings``, each layer's output and each layer's self-attention module."""

    embeddings: str
    layers: tuple[str, ...]
    attention: tuple[str, ...]
    hidden_size: int
    embedding_size: int
    num_heads: int

    @property
    def num_layers(self) -> int:
        """How many transformer layers the encoder has."""
        return len(self.layers)

    def layer_tap(self, layer: int) -> str:
        """The output of layer ``layer`` (1-based), or the embeddings for 0."""
        return self.embeddings if layer == 0 else self.layers[layer - 1]

    def attention_tap(self, layer: int) -> str:
        """The hidden states entering layer ``layer``'s self-attention (1-based): ``in:<module>``."""
        return f"in:{self.attention[layer - 1]}"


def _layer_stack(model: nn.Module, count: int) -> str:
    stacks = [name for name, module in model.named_modules()
              if isinstance(module, nn.ModuleList) and len(module) == count and name]
    if not stacks:
        raise ConfigError("model", f"an encoder with a ModuleList of {count} layers (config.num_hidden_layers)",
                          type(model).__name__)
    return min(stacks, key=len)


def _attention_in(block: nn.Module) -> str:
    for name, module in block.named_modules():
        try:
            query_key(module)
        except ConfigError:
            continue
        if name:
            return name
    raise ConfigError("model", "layers with a self-attention module holding query and key projections",
                      type(block).__name__)


def encoder_layout(model: nn.Module) -> EncoderLayout:
    """The tap paths of a transformers encoder model (with or without a head), found from its config."""
    config = getattr(model, "config", None)
    count = getattr(config, "num_hidden_layers", None)
    if not isinstance(count, int) or count < 1:
        raise ConfigError("model", "a transformers model whose config has num_hidden_layers", type(model).__name__)
    stack = _layer_stack(model, count)
    blocks = dict(model.named_modules())[stack]
    attention = _attention_in(blocks[0])
    parent = stack.rsplit(".", 2)[0] if stack.count(".") >= 1 else ""
    modules = dict(model.named_modules())
    candidates = [n for n in modules if n.endswith("embeddings") and n.count(".") <= stack.count(".")
                  and isinstance(modules[n], nn.Module) and not n.endswith("position_embeddings")]
    preferred = [n for n in candidates if n.startswith(parent)] or candidates
    if not preferred:
        raise ConfigError("model", "an encoder with an `embeddings` module", type(model).__name__)
    hidden = int(config.hidden_size)
    return EncoderLayout(
        embeddings=min(preferred, key=len),
        layers=tuple(f"{stack}.{i}" for i in range(count)),
        attention=tuple(f"{stack}.{i}.{attention}" for i in range(count)),
        hidden_size=hidden,
        embedding_size=int(getattr(config, "embedding_size", None) or hidden),
        num_heads=int(config.num_attention_heads),
    )
