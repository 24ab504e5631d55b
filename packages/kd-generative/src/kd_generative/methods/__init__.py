"""Distillation and pruning methods for generative models: one module per paper, registered under ``kd.methods``.

- ``compact``: ``pix2pix-compact``, compact Pix2Pix students distilled without a discriminator (Kim et al.,
  arXiv:2304.00471), against scratch, plain Pix2Pix and KD + GAN;
- ``wav2lip_compact`` (with ``wav2lip_losses``, ``wav2lip_report``): ``wav2lip-compact``, the same scheme on a
  Wav2Lip-style talking-face generator, with the lip-sync expert's loss;
- ``unet_prune`` (with ``unet_prune_students``, ``unet_prune_report``): ``unet-inner`` and ``unet-global``, Cut
  Inner Layers (Kim, Choi and Park, arXiv:2206.14658) against global L1 pruning, the pruning reached through
  kd-core's ``kd.unet_pruning`` plugins;
- ``pix2pix``: Pix2Pix's training pieces (L1 and cGAN terms, the PatchGAN signal, Adam, the LR schedule);
- ``features``: projected feature L1 between generators of different widths.
"""
