"""Builders that records may name for models kd does not define: Hugging Face classes from a config.

``transformers`` is not a kd-edge dependency; it is imported only when such a model is built.
"""

from __future__ import annotations

import importlib
from typing import Any

from kd_core.errors import CheckpointError
from torch import nn

from kd_edge.prune.record import attach_source

__all__ = ["HF_BUILDER", "hf_model", "hf_source"]

HF_BUILDER = "kd_edge.prune.builders:hf_model"


def hf_model(model_class: str, config: dict[str, Any], **init_kwargs: Any) -> nn.Module:
    """``cls(cls.config_class.from_dict(config), **init_kwargs)`` for a ``transformers`` model class
    named ``"transformers:BertModel"`` (randomly initialised; the weights come from the record)."""
    module_name, _, name = model_class.partition(":")
    if module_name.split(".")[0] != "transformers" or not name:
        raise CheckpointError("model_class", "a class of the transformers package, 'transformers:BertModel'",
                              model_class)
    transformers = importlib.import_module("transformers")
    cls = getattr(importlib.import_module(module_name), name, None)
    if not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)):
        raise CheckpointError("model_class", "a transformers PreTrainedModel subclass", model_class)
    return cls(cls.config_class.from_dict(dict(config)), **init_kwargs)


def hf_source(model: nn.Module, **init_kwargs: Any) -> nn.Module:
    """Attach to a Hugging Face ``model`` the source ``hf_model`` rebuilds it from: its class and its
    config now (call this before pruning), plus constructor keywords such as ``add_pooling_layer``."""
    config = model.config.to_dict()
    cls = type(model)
    return attach_source(model, HF_BUILDER, {"model_class": f"transformers:{cls.__name__}", "config": config,
                                             **init_kwargs})
