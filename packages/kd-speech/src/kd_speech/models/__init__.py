"""Speech architectures: vq-wav2vec (encoder, quantizers, aggregator, contrastive loss), a safe reader for its
fairseq checkpoints, and a BERT over its discrete tokens.

Baevski, Schneider, Auli, "vq-wav2vec: Self-Supervised Learning of Discrete Speech Representations", ICLR 2020
(arXiv 1910.05453).

The speech-BERT helpers (:mod:`kd_speech.models.speech_bert`) import transformers, so they load on first use.
"""

import importlib
from typing import Any

from kd_speech.models.codebook import CodebookUsage, codebook_usage, combine_indices, split_tokens
from kd_speech.models.contrastive import FutureStepPredictor, future_contrastive_loss, sample_distractors
from kd_speech.models.conv_encoder import ContextAggregator, FeatureEncoder
from kd_speech.models.fairseq_checkpoint import ALLOWED_GLOBALS, FairseqCheckpoint, read_fairseq_checkpoint
from kd_speech.models.fairseq_vq_wav2vec import (
    LoadReport,
    config_from_fairseq_args,
    load_fairseq_state_dict,
    load_fairseq_vq_wav2vec,
)
from kd_speech.models.mel_units import MelUnits, kmeans
from kd_speech.models.quantizers import GumbelQuantizer, KMeansQuantizer, QuantizerOutput
from kd_speech.models.speech_vocab import SPECIAL_TOKENS, SpeechVocabulary
from kd_speech.models.vq_pretrain import PretrainResult, measure_usage, pretrain_vq_wav2vec
from kd_speech.models.vq_wav2vec import VqWav2Vec, VqWav2VecConfig, VqWav2VecOutput

__all__ = ["ALLOWED_GLOBALS", "SPECIAL_TOKENS", "CodebookUsage", "ContextAggregator", "FairseqCheckpoint",
           "FeatureEncoder", "FutureStepPredictor", "GumbelQuantizer", "KMeansQuantizer", "LoadReport", "MelUnits",
           "PretrainResult", "QuantizerOutput", "SpeechVocabulary", "VqWav2Vec", "VqWav2VecConfig",
           "VqWav2VecOutput", "build_speech_bert", "codebook_usage", "combine_indices", "config_from_fairseq_args",
           "future_contrastive_loss", "kmeans", "load_fairseq_state_dict", "load_fairseq_vq_wav2vec",
           "load_speech_bert",
           "mask_tokens", "measure_usage", "pretrain_speech_bert", "pretrain_vq_wav2vec", "read_fairseq_checkpoint",
           "sample_distractors", "speech_bert_config", "speech_input_ids", "split_tokens"]

_LAZY = {name: "kd_speech.models.speech_bert" for name in (
    "build_speech_bert", "load_speech_bert", "mask_tokens", "pretrain_speech_bert", "speech_bert_config",
    "speech_input_ids")}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
