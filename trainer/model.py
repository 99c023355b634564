"""The notebook's CNN with a choice of normalization, returning logits."""

from typing import Callable

import math
from typing import Tuple

import tensorflow as tf
import tf_keras as keras

from contract.features import FASHION_MNIST
from trainer import layers as norm_layers
from trainer.config import VARIANTS

# The largest feature map the classifier flattens, per side: the notebook's 28x28 input gives
# 14x14 after its one block, so its network is unchanged, and a 224x224 input's dense layer stays
# as small as the notebook's instead of growing with the image.
MAX_FLATTENED_SIDE = 14


def _conv(filters, seed, use_bias, name):
  return keras.layers.Conv2D(
    filters,
    3,
    padding="same",
    use_bias=use_bias,
    name=name,
    kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
  )


def _dense(units, seed, name):
  return keras.layers.Dense(
    units, name=name, kernel_initializer=keras.initializers.GlorotUniform(seed=seed)
  )


def _plain_conv(x, filters, seed, name):
  return _conv(filters, seed, True, f"{name}_conv")(x)


def _weight_norm_conv(x, filters, seed, name):
  return norm_layers.WeightNormConv2D(
    filters, 3, name=f"{name}_conv", kernel_initializer=keras.initializers.GlorotUniform(seed=seed)
  )(x)


def _weight_norm_dense(units, seed, name):
  return norm_layers.WeightNormDense(
    units, name=name, kernel_initializer=keras.initializers.GlorotUniform(seed=seed)
  )


def _conv_then(norm_factory: Callable[[str], keras.layers.Layer], use_bias: bool):
  def block(x, filters, seed, name):
    x = _conv(filters, seed, use_bias, f"{name}_conv")(x)
    return norm_factory(f"{name}_norm")(x)

  return block


# Each variant maps to (conv block builder, classifier builder). A bias right
# before batch normalization is cancelled by the mean subtraction, so those
# convolutions go without one. Weight normalization reparameterizes the conv
# and the classifier themselves instead of adding a layer.
_VARIANT_BUILDERS = {
  "none": (_plain_conv, _dense),
  "batch": (_conv_then(lambda name: norm_layers.BatchNormalization(name=name), False), _dense),
  "layer": (_conv_then(lambda name: norm_layers.LayerNormalization(name=name), True), _dense),
  "weight": (_weight_norm_conv, _weight_norm_dense),
  "keras_batch": (
    _conv_then(lambda name: keras.layers.BatchNormalization(name=name), False),
    _dense,
  ),
  # Keras normalizes over (H, W, C) too but learns gamma/beta per element.
  "keras_layer": (
    _conv_then(lambda name: keras.layers.LayerNormalization(axis=[1, 2, 3], name=name), True),
    _dense,
  ),
}
assert set(_VARIANT_BUILDERS) == set(VARIANTS), 'a builder per variant of trainer/config.py'


def build_model(
  variant: str,
  *,
  filters: int = 32,
  conv_blocks: int = 1,
  hidden_units: int = 0,
  image_shape: Tuple[int, int, int] = FASHION_MNIST.image_shape,
  num_classes: int = FASHION_MNIST.num_classes,
  seed: int | None = None,
) -> keras.Model:
  """conv(3x3, same) -> norm -> ReLU -> 2x2 max-pool, repeated conv_blocks times
  with doubling filters, then [average-pool] -> flatten -> [dense hidden_units -> ReLU] -> dense
  logits.

  The defaults are the notebook's network: one block of 32 filters, no hidden layer, on
  Fashion-MNIST's 28x28x1 images.

  Any image size from 8x8 up works: each block halves the feature map (rounding down), so the
  input needs at least 2**conv_blocks pixels per side (ValueError otherwise). A final feature map
  larger than MAX_FLATTENED_SIDE (14) on a side is average-pooled, by the smallest whole factor
  per side that brings it to at most 14 (224x224 after one block: 112 / 8 = 14), before the
  flatten; at most 14x14 is flattened as it is, so 28x28 inputs keep the notebook's exact
  flatten -> dense network, and a large image's classifier stays as small as a 28x28 one's.

  Input: float32 [batch, *image_shape]. Output: logits [batch, num_classes].
  Variants: "none", our "batch" / "layer" / "weight" normalization, and the
  Keras built-ins "keras_batch" / "keras_layer" as references. Every variant
  trains with plain model(x, training=True) calls; "weight" is initialized
  from a batch by initialize_from_batch before training.
  """
  if variant not in _VARIANT_BUILDERS:
    raise ValueError(f"Unknown normalization variant {variant!r}; valid: {', '.join(VARIANTS)}")
  if conv_blocks < 1:
    raise ValueError(f"conv_blocks must be >= 1, got {conv_blocks}")
  if hidden_units < 0:
    raise ValueError(f"hidden_units must be >= 0, got {hidden_units}")
  height, width, _ = image_shape
  smallest = 2**conv_blocks
  if min(height, width) < smallest:
    raise ValueError(
      f"a {height}x{width} image is too small for conv_blocks={conv_blocks}: each block halves "
      f"it, so it needs at least {smallest}x{smallest}; use fewer conv_blocks or a larger "
      "image_size"
    )
  conv_block, classifier = _VARIANT_BUILDERS[variant]

  def layer_seed(index):
    return None if seed is None else seed + index

  images = keras.Input(shape=image_shape, dtype=tf.float32, name="images")
  x = images
  for block in range(conv_blocks):
    name = f"block{block + 1}"
    x = conv_block(x, filters * 2**block, layer_seed(block), name)
    x = keras.layers.ReLU(name=f"{name}_relu")(x)
    x = keras.layers.MaxPooling2D(2, name=f"{name}_pool")(x)
  pool_size = tuple(math.ceil(side / MAX_FLATTENED_SIDE) for side in x.shape[1:3])
  if pool_size != (1, 1):
    x = keras.layers.AveragePooling2D(pool_size, padding="same", name="feature_pool")(x)
  x = keras.layers.Flatten(name="flatten")(x)
  if hidden_units:
    x = classifier(hidden_units, layer_seed(conv_blocks + 1), "hidden")(x)
    x = keras.layers.ReLU(name="hidden_relu")(x)
  logits = classifier(num_classes, layer_seed(conv_blocks), "logits")(x)
  return keras.Model(images, logits, name=f"cnn_{variant}")


def _weight_normalized_layers(model: keras.Model) -> list[keras.layers.Layer]:
  return [
    layer
    for layer in model.layers
    if isinstance(layer, (norm_layers.WeightNormConv2D, norm_layers.WeightNormDense))
  ]


def uninitialized_layers(model: keras.Model) -> list[str]:
  """Names of layers whose data-dependent initialization has not run yet."""
  return [
    layer.name
    for layer in _weight_normalized_layers(model)
    if not bool(layer.initialized.read_value())
  ]


def initialize_from_batch(model: keras.Model, images) -> list[str]:
  """Runs the data-dependent initialization of every uninitialized layer on `images`; returns their names.

  Layer by layer in network order, each on the activations that reach it
  through the layers initialized before it (Salimans & Kingma, 2016). Runs
  eagerly, once, outside any training step, and outside a replica context
  (every replica's copy gets the same values); a no-op for a model restored
  from a checkpoint of an initialized one.
  """
  initialized = []
  for layer in _weight_normalized_layers(model):
    if bool(layer.initialized.read_value()):
      continue
    layer_inputs = keras.Model(model.inputs, layer.input)(images, training=False)
    layer.initialize(layer_inputs)
    initialized.append(layer.name)
  return initialized
