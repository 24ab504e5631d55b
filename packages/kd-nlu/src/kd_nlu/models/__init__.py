"""Student and teacher architectures for language understanding, built from transformers configs."""
