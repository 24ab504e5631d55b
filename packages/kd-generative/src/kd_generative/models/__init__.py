"""Generator and discriminator architectures: ``unet`` (the Pix2Pix U-Net generator, which describes itself
through ``kd_core.structure`` for kd-edge's U-Net pruning) and ``patchgan`` (the Pix2Pix PatchGAN
discriminator). Planned: diffusion U-Nets built from diffusers configs."""
