"""Hand-written normalization layers, registered for Keras serialization as "fmnist>Name"."""

from trainer.layers.batch_norm import BatchNormalization
from trainer.layers.layer_norm import LayerNormalization
from trainer.layers.weight_norm import WeightNormConv2D, WeightNormDense

__all__ = ["BatchNormalization", "LayerNormalization", "WeightNormConv2D", "WeightNormDense"]
