"""Two-stage textual knowledge distillation for end-to-end spoken language understanding.

Kim, Kim, Shin & Lee, ICASSP 2021 (arXiv 2010.13105): PT-KD matches the speech BERT's utterance ``[CLS]`` to a
frozen text encoder's during additional pre-training (with the vq-token MLM loss); FT-KD fine-tunes a
DeepSpeech2-style head on the frozen speech BERT with cross-entropy plus an L1 on the text teacher's intent
logits; span masking of vq tokens and time/channel masking of hidden states augment the data.

- :mod:`~kd_speech.slu.losses`: ``pt_kd_loss``, ``ft_kd_loss``, ``logit_l1``;
- :mod:`~kd_speech.slu.augment`: ``span_mask_tokens``, ``time_mask``, ``channel_mask`` and their modules;
- :mod:`~kd_speech.slu.head`: ``DS2Head``;
- :mod:`~kd_speech.slu.model`: ``SpeechIntentModel`` (fine-tuning) and ``PTKDModel`` (pre-training);
- :mod:`~kd_speech.slu.teacher`: ``TranscriptTeacher``, any frozen text model read from the batch's text fields;
- :mod:`~kd_speech.slu.objective`: ``ft_kd_objective``, FT-KD as a kd-core ``Objective``.
"""

from kd_speech.slu.augment import HiddenAugment, TokenSpanMask, channel_mask, span_cover, span_mask_tokens, time_mask
from kd_speech.slu.head import DS2Head, lengths_from_mask
from kd_speech.slu.losses import FTKDLoss, ft_kd_loss, logit_l1, pt_kd_loss
from kd_speech.slu.model import PTKDModel, SpeechIntentModel
from kd_speech.slu.objective import ft_kd_objective
from kd_speech.slu.teacher import TranscriptTeacher

__all__ = ["DS2Head", "FTKDLoss", "HiddenAugment", "PTKDModel", "SpeechIntentModel", "TokenSpanMask",
           "TranscriptTeacher", "channel_mask", "ft_kd_loss", "ft_kd_objective", "lengths_from_mask", "logit_l1",
           "pt_kd_loss", "span_cover", "span_mask_tokens", "time_mask"]
