"""Class-incremental learning on digits with generative replay and distillation (arXiv:2306.17560).

Modules, one job each: ``stream`` (tasks of classes, per-task views), ``heads`` (the fixed 10-way head
masked to seen classes), ``memory`` (exemplars), ``generators`` (the frozen per-class Gaussian-mixture
generator), ``losses`` (CE on labelled samples, old-class KD), ``training`` (variants A-F and one task
through ``Distiller``), ``evaluation`` (accuracy-matrix rows, a classifier that keeps its history, the
Study's evaluator), ``nme`` (iCaRL's nearest-mean-of-exemplars classifier), ``metrics`` (average
incremental accuracy, final accuracy, forgetting), ``runner`` (a whole stream), ``plots`` (accuracy per
task, sample grids).
"""
