"""Tokenised text datasets for kd-nlu: ``TextDataset``, ``TextCollator`` and ``encoder_forward`` live in
``kd_core.text_data`` (kd-speech's text teacher uses them too) and are re-exported here."""

from kd_core.text_data import MODEL_KEYS, TextCollator, TextDataset, encoder_forward

__all__ = ["MODEL_KEYS", "TextCollator", "TextDataset", "encoder_forward"]
