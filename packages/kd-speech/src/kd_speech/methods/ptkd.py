"""Stage 1 of two-stage textual KD: PT-KD, extra pre-training of the speech BERT towards the text encoder.

Kim, Kim, Shin & Lee, "Two-Stage Textual Knowledge Distillation for End-to-End Spoken Language Understanding",
ICASSP 2021 (arXiv 2010.13105), section 2.2: the speech BERT keeps its masked-token (MLM) loss and adds
``kd_weight * MSE(speech [CLS], text utterance embedding)`` on pairs of audio tokens and transcripts.

The text target here is the utterance embedding of the *pre-trained* MiniLM encoder (all-MiniLM-L6-v2, bundled
with kd-core): the mean of its last hidden states over the transcript's tokens, because that model was trained
as a sentence encoder with mean pooling (its ``[CLS]`` vector is not trained as an utterance summary). The speech
``[CLS]`` is mapped to the text width (384) by ``PTKDModel``'s linear projector when the widths differ.

Fairness: the "base" encoder of the ladder is the same MLM speech BERT continued for the same number of steps
with the same loop and ``kd_weight = 0`` (MLM only), so that base and +PT-KD get the same encoder updates.
Both are cached under ``$KD_DATA_HOME/teachers/`` by everything that determines them.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Annotated, Any

import torch
from kd_core.backends import Backend
from kd_core.datacache import cached_model
from kd_core.errors import ConfigError, NonFiniteLossError
from kd_core.pretrained import minilm_fingerprint
from kd_core.recipes import Section
from pydantic import Field
from torch import nn

from kd_speech.tasks import MAX_POSITIONS, SpeechCommands, announce

__all__ = ["TEXT_DIM", "PTKDSection", "continue_pretraining", "ptkd_encoders", "text_embeddings"]

TEXT_DIM = 384
"""The width of MiniLM-L6's hidden states (the PT-KD target)."""


class PTKDSection(Section):
    """The PT-KD stage: extra pre-training steps, the weight of the embedding MSE, AdamW lr and batch size."""

    steps: Annotated[int, Field(gt=0)] = 200
    kd_weight: Annotated[float, Field(gt=0)] = 1.0
    lr: Annotated[float, Field(gt=0)] = 5e-4
    batch_size: Annotated[int, Field(gt=0)] = 16


@torch.no_grad()
def text_embeddings(texts: Sequence[str], tokenizer: Any, max_length: int = 32, batch_size: int = 64) -> torch.Tensor:
    """Mean-pooled last hidden states ``[len(texts), 384]`` of the pre-trained MiniLM encoder (CPU, eval mode)."""
    from kd_core.pretrained import minilm_path, quiet_transformers
    from transformers import AutoModel

    if not texts:
        raise ConfigError("texts", "at least one transcript", 0)
    with quiet_transformers():
        model = AutoModel.from_pretrained(str(minilm_path()), local_files_only=True).eval()
    out = []
    for start in range(0, len(texts), batch_size):
        encoded = tokenizer(list(texts[start:start + batch_size]), truncation=True, max_length=max_length,
                            padding=True, return_tensors="pt")
        hidden = model(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"]).last_hidden_state
        mask = encoded["attention_mask"].unsqueeze(-1).float()
        out.append((hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0))
    return torch.cat(out)


def continue_pretraining(bert: nn.Module, sequences: Sequence[torch.Tensor], vocab: Any,
                         text: torch.Tensor | None, steps: int, *, kd_weight: float = 1.0, lr: float = 5e-4,
                         batch_size: int = 16, seed: int = 0, device: torch.device | str = "cpu"
                         ) -> list[dict[str, float]]:
    """``steps`` AdamW updates of MLM + ``kd_weight`` x PT-KD (``text``: one target row per sequence; None or
    ``kd_weight = 0``: MLM alone) on ``bert`` in place; the per-step losses. Order and masks come from ``seed``."""
    from kd_speech.models.speech_bert import masked_batches
    from kd_speech.slu import PTKDModel

    if text is not None and len(text) != len(sequences):
        raise ConfigError("text", f"one embedding per sequence ({len(sequences)})", len(text))
    use_kd = text is not None and kd_weight > 0
    model = PTKDModel(bert, TEXT_DIM if use_kd else None).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    history: list[dict[str, float]] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        batches = masked_batches(sequences, vocab, batch_size, generator, MAX_POSITIONS)
        model.train()
        for step in range(steps):
            batch, masked, mask, labels = next(batches)
            inputs = {"input_ids": masked.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}
            if use_kd:
                loss, parts = model.loss(inputs, text[batch].to(device), kd_weight=kd_weight)
            else:
                parts = {"mlm": model(inputs)["mlm_loss"]}
                loss = parts["mlm"]
            value = float(loss.detach())
            if not math.isfinite(value):
                raise NonFiniteLossError("ptkd.lr", "a learning rate that keeps the loss finite", value,
                                         hint=f"at step {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            history.append({k: float(v.detach()) for k, v in parts.items()})
    bert.eval()
    return history


def ptkd_encoders(commands: SpeechCommands, config: PTKDSection, seed: int = 0, device: str = "cpu",
                  text_max_length: int = 32) -> tuple[nn.Module, nn.Module, dict[str, str]]:
    """``(base, ptkd, notes)``: the MLM speech BERT continued ``config.steps`` steps by MLM alone, and by MLM +
    PT-KD towards the train transcripts' MiniLM embeddings; both cached."""
    target = Backend(device=device).device
    sequences = commands.tokens["train"]
    unlabelled = {k: v for k, v in commands.key.items() if k != "labels"}  # PT-KD reads every train utterance
    key = {"speech": unlabelled, "ptkd": config.model_dump(), "seed": seed, "text_max_length": text_max_length}

    def build() -> nn.Module:
        return copy.deepcopy(commands.bert)

    def train_with(kd: bool) -> Any:
        def train(model: nn.Module) -> nn.Module:
            stage = "MLM + PT-KD" if kd else "MLM alone"
            announce(f"speech BERT: {config.steps} more steps of {stage} (cached afterwards)")
            text = text_embeddings(commands.texts["train"], commands.tokenizer, text_max_length) if kd else None
            continue_pretraining(model, sequences, commands.vocab, text, config.steps,
                                 kd_weight=config.kd_weight if kd else 0.0, lr=config.lr,
                                 batch_size=config.batch_size, seed=seed, device=target)
            return model.cpu()

        return train

    base, base_note = cached_model(build, train_with(False), "speech-bert-mlm-continued", True, **key)
    ptkd, ptkd_note = cached_model(build, train_with(True), "speech-bert-ptkd", True, minilm=minilm_fingerprint(),
                                   **key)
    return base.cpu().eval(), ptkd.cpu().eval(), {"base encoder (MLM continued)": base_note,
                                                  "PT-KD encoder": ptkd_note}
