"""Distillation methods for speech: one module per paper, each registered under ``kd.methods``.

- :mod:`~kd_speech.methods.two_stage`: ``slu-two-stage``, two-stage textual KD for spoken intents (Kim, Kim, Shin &
  Lee, ICASSP 2021, arXiv 2010.13105), with its PT-KD pre-training stage in :mod:`~kd_speech.methods.ptkd`.
"""
