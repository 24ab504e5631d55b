"""Label-ambiguity methods' building blocks (Park & Park, ACL 2023, arXiv:2306.07061; Park, Jeong, Cho & Park,
arXiv:2406.09719), one job per module.

- ``data``: tasks with human label distributions (VADER) and their splits;
- ``layers``: where an encoder keeps its layer list, and the tap paths of its layers;
- ``heads``: pooling of a layer's hidden states and the linear probe head on top;
- ``probes``: per-layer features read through kd-core taps, and a bank of linear probes trained on them;
- ``plateau``: the layer where validation accuracy stops improving;
- ``pruning``: dropping an encoder's top layers (the result still saves and reloads);
- ``lower_layer``: a classifier read off a lower layer (S2's teacher) and the self-distillation student (S1);
- ``recalibration``: which training samples are extremely ambiguous, and the re-calibration objective;
- ``evaluation``: scoring a classifier (or one of its taps) against human distributions, and the ``Task``
  evaluator that does it over a study's batches;
- ``task``: the ``Task`` of texts with human distributions (VADER or a jsonl file), headline JSD.

Training goes through ``Distiller`` (``kd_nlu.methods.ambiguity`` runs the arms as a ``kd_core.study.Study``).
"""
