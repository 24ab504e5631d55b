"""Where a transformer encoder keeps its stack of layers, and the kd-core tap path of each layer's output."""

from __future__ import annotations

from kd_core.errors import ConfigError
from kd_core.taps import unwrap
from torch import nn

# the layer lists of Hugging Face encoders: BERT/RoBERTa/ELECTRA/MiniLM, DistilBERT, and generic stacks
LAYER_LISTS = ("encoder.layer", "transformer.layer", "encoder.layers", "layers")


def encoder_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The dotted path and the ``ModuleList`` of ``model``'s encoder layers (the first match, outermost first)."""
    modules = dict(unwrap(model).named_modules())
    for suffix in LAYER_LISTS:
        for name, module in modules.items():
            if (name == suffix or name.endswith("." + suffix)) and isinstance(module, nn.ModuleList) and len(module):
                return name, module
    raise ConfigError("model", f"a transformer encoder with a layer list (one of {list(LAYER_LISTS)})",
                      type(unwrap(model)).__name__)


def layer_paths(model: nn.Module) -> list[str]:
    """Tap paths of every layer's output, bottom to top: entry ``ℓ - 1`` is layer ``ℓ`` (1-based)."""
    path, layers = encoder_layers(model)
    return [f"{path}.{i}" for i in range(len(layers))]


def check_layer(layer: int, n_layers: int, argument: str = "layer", below_top: bool = False) -> int:
    """``layer`` as a 1-based layer index in ``[1, n_layers]`` (``[1, n_layers - 1]`` with ``below_top``)."""
    top = n_layers - 1 if below_top else n_layers
    if isinstance(layer, bool) or not isinstance(layer, int) or not 1 <= layer <= top:
        what = "strictly below the top layer" if below_top else "of the encoder"
        raise ConfigError(argument, f"a 1-based layer index in [1, {top}] ({what}; the encoder has {n_layers})",
                          layer)
    return layer
