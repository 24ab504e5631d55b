"""Distillation methods for generative models: one module per paper, registered under ``kd.methods``.

- ``compact``: ``pix2pix-compact``, compact Pix2Pix students distilled without a discriminator (Kim et al.,
  arXiv:2304.00471), against scratch, plain Pix2Pix and KD + GAN;
- ``pix2pix``: Pix2Pix's training pieces (L1 and cGAN terms, the PatchGAN signal, Adam, the LR schedule);
- ``features``: projected feature L1 between generators of different widths.
"""
