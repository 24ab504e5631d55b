"""Speech architectures. None yet; planned: wav2vec-style encoders, vq-wav2vec and CTC heads."""
