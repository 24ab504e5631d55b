"""Pruning for the edge: structured channels (Torch-Pruning's DepGraph), whole layers, U-Net inner
layers (Cut Inner Layers), and pruned models saved as an architecture record plus safetensors.

Import the submodules: ``structured``, ``layers``, ``unet_cut``, ``record``, ``builders``, ``command``.
"""
