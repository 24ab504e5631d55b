"""Distillation methods for speech: one module per paper, each registered under ``kd.methods``.

- :mod:`~kd_speech.methods.two_stage`: ``slu-two-stage``, two-stage textual KD for spoken intents (Kim, Kim, Shin &
  Lee, ICASSP 2021, arXiv 2010.13105), with its PT-KD pre-training stage in :mod:`~kd_speech.methods.ptkd`;
- :mod:`~kd_speech.methods.lm_distill`: ``lm-distill``, a word LM for n-best/lattice rescoring distilled into a
  >= 4x smaller one, WER before and after;
- :mod:`~kd_speech.methods.vq_wav2vec_pretrain`: ``vq-wav2vec-pretrain``, self-supervised vq-wav2vec pre-training
  (Baevski et al., ICLR 2020) on the spoken commands or your own audio, with codebook usage.
"""
