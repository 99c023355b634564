"""Custom TFX components of the Fashion-MNIST pipeline."""
