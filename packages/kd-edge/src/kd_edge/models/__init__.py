"""Model surgery helpers for deployment: pruned and quantization-ready module variants."""
