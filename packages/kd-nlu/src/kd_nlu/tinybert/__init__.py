"""TinyBERT's pieces: layer maps and encoder layouts, objectives, and word-replacement augmentation."""
