"""Generator architectures. None yet; planned: GAN generators and diffusion U-Nets built from diffusers configs."""
