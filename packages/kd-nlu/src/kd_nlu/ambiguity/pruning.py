"""Layer pruning: keep an encoder's embeddings and its bottom ``keep`` layers, drop the layers above.

Park & Park (ACL 2023, arXiv:2306.07061) prune a fine-tuned encoder above the layer where validation
accuracy plateaus. The pruned model is the same Hugging Face class with ``num_hidden_layers = keep``,
so ``save_pretrained`` / ``from_pretrained`` (or ``AutoModelFor...``) round-trip it.
"""

from __future__ import annotations

import copy

from kd_core.taps import unwrap
from torch import nn

from kd_nlu.ambiguity.layers import check_layer, encoder_layers

# config fields that count encoder layers, across Hugging Face encoder families
_DEPTH_FIELDS = ("num_hidden_layers", "n_layers", "num_layers")


def prune_layers(model: nn.Module, keep: int) -> nn.Module:
    """A copy of ``model`` with only its bottom ``keep`` encoder layers (1 ≤ keep ≤ depth); ``model`` is untouched.

    Heads above the encoder (pooler, classifier) are kept and now read the last kept layer.
    """
    pruned = copy.deepcopy(unwrap(model))
    path, layers = encoder_layers(pruned)
    keep = check_layer(keep, len(layers), "keep")
    parent_path, _, attribute = path.rpartition(".")
    parent = pruned.get_submodule(parent_path) if parent_path else pruned
    setattr(parent, attribute, nn.ModuleList(list(layers)[:keep]))
    config = getattr(pruned, "config", None)
    if config is not None:
        for field in _DEPTH_FIELDS:
            if isinstance(getattr(config, field, None), int):
                setattr(config, field, keep)
    return pruned
