"""Generator architectures: GAN generators and diffusion U-Nets built from diffusers configs."""
