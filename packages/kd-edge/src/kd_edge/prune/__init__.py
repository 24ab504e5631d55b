"""Pruning for the edge: structured channels (Torch-Pruning's DepGraph), whole layers, U-Net inner
layers (Cut Inner Layers, on any U-Net that ``kd_core.structure`` describes), and pruned models saved as an
architecture record plus safetensors.

Import the submodules: ``structured``, ``layers``, ``unet_cut`` (with ``unet_fold``), ``record``, ``builders``,
``command``.
"""
