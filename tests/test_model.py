"""The CNN variants: shapes, batch independence at inference, robustness, persistence."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import trainer  # noqa: F401
from trainer.model import VARIANTS, build_model, initialize_from_batch, uninitialized_layers

OUR_VARIANTS = ("batch", "layer", "weight")


def _images(batch, seed):
  return tf.random.stateless_uniform([batch, 28, 28, 1], seed=[seed, 0])


def _labels(batch, seed):
  return tf.random.stateless_uniform([batch], seed=[seed, 1], maxval=10, dtype=tf.int32)


def _train_step_fn(model):
  optimizer = keras.optimizers.Adam(1e-3)  # one optimizer per model
  loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

  @tf.function
  def train_step(images, labels):
    with tf.GradientTape() as tape:
      loss = loss_fn(labels, model(images, training=True))
    gradients = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(gradients, model.trainable_variables))
    return loss, gradients

  return train_step, optimizer


def _trained_model(variant, steps=2, **kwargs):
  model = build_model(variant, filters=8, seed=0, **kwargs)
  initialize_from_batch(model, _images(16, 0))
  train_step, optimizer = _train_step_fn(model)
  for step in range(steps):
    train_step(_images(16, step), _labels(16, step))
  return model, optimizer


def test_importing_trainer_makes_tf_keras_the_keras_2_package():
  assert tf.keras.__name__.startswith("tf_keras")
  assert tf.keras.layers.Dense is keras.layers.Dense
  assert keras.__version__.startswith("2.16")


def test_variants_are_complete_and_unknown_ones_are_named():
  assert set(VARIANTS) == {"none", "batch", "layer", "weight", "keras_batch", "keras_layer"}
  with pytest.raises(ValueError, match=r"'group'.*none.*keras_layer"):
    build_model("group")


@pytest.mark.parametrize("variant", VARIANTS)
def test_logits_shape_for_the_notebook_and_the_deeper_model(variant):
  for conv_blocks, hidden_units in ((1, 0), (2, 16)):
    model = build_model(
      variant,
      filters=8,
      conv_blocks=conv_blocks,
      hidden_units=hidden_units,
      num_classes=7,
      seed=1,
    )
    logits = model(_images(3, 0), training=False)
    assert logits.shape == (3, 7) and logits.dtype == tf.float32
    assert ("hidden" in [layer.name for layer in model.layers]) == bool(hidden_units)


def test_seed_makes_models_reproducible():
  first, second = build_model("batch", seed=5), build_model("batch", seed=5)
  for a, b in zip(first.weights, second.weights):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("variant", VARIANTS)
def test_inference_of_one_example_equals_its_output_in_a_batch(variant):
  model, _ = _trained_model(variant)
  batch = _images(8, 7)
  in_batch = model(batch, training=False)
  alone = model(batch[3:4], training=False)
  np.testing.assert_allclose(alone[0], in_batch[3], atol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
def test_batch_of_one_and_constant_input_stay_finite(variant):
  model = build_model(variant, filters=8, seed=2)
  train_step, _ = _train_step_fn(model)
  for images in (_images(1, 3), tf.fill([4, 28, 28, 1], 0.5), tf.zeros([2, 28, 28, 1])):
    loss, gradients = train_step(images, _labels(images.shape[0], 4))
    assert np.isfinite(loss.numpy())
    for gradient in gradients:
      assert np.all(np.isfinite(tf.convert_to_tensor(gradient).numpy()))
    assert np.all(np.isfinite(model(images, training=False).numpy()))
  assert all(np.all(np.isfinite(w.numpy())) for w in model.weights)


def test_weight_variant_is_initialized_layer_by_layer_before_training_and_once():
  model = build_model("weight", filters=8, hidden_units=16, seed=6)
  names = ["block1_conv", "hidden", "logits"]
  assert uninitialized_layers(model) == names
  train_step, _ = _train_step_fn(model)
  train_step(_images(4, 10), _labels(4, 10))
  assert uninitialized_layers(model) == names, "a training step must not initialize"

  model = build_model("weight", filters=8, hidden_units=16, seed=6)
  batch = _images(64, 11)
  assert initialize_from_batch(model, batch) == names
  assert uninitialized_layers(model) == []
  # Each layer normalizes the activations that reach it through the ones initialized before it.
  outputs = keras.Model(model.inputs, [model.get_layer(name).output for name in names])(batch)
  for name, output in zip(names, outputs):
    per_unit = tf.reshape(output, [-1, output.shape[-1]])
    np.testing.assert_allclose(tf.reduce_mean(per_unit, 0), 0.0, atol=1e-4, err_msg=name)
    np.testing.assert_allclose(tf.math.reduce_std(per_unit, 0), 1.0, atol=1e-2, err_msg=name)
  state = _state(model)
  assert initialize_from_batch(model, _images(64, 12) + 1.0) == []
  for name, value in _state(model).items():
    np.testing.assert_array_equal(value, state[name], err_msg=name)


def _state(model):
  return {w.name: w.numpy() for w in model.weights}


@pytest.mark.parametrize("variant", OUR_VARIANTS)
def test_checkpoint_restores_statistics_g_and_init_flag(variant, tmp_path):
  model, optimizer = _trained_model(variant)
  path = tf.train.Checkpoint(model=model, optimizer=optimizer).save(str(tmp_path / "ckpt"))

  restored = build_model(variant, filters=8, seed=99)
  _, restored_optimizer = _train_step_fn(restored)
  tf.train.Checkpoint(model=restored, optimizer=restored_optimizer).restore(
    path
  ).assert_existing_objects_matched()
  expected_state = _state(model)
  assert (
    any("moving" in n or "/g:" in n or "initialized" in n for n in expected_state)
    or variant == "layer"
  )
  for name, value in _state(restored).items():
    np.testing.assert_array_equal(value, expected_state[name], err_msg=name)
  x = _images(4, 8)
  np.testing.assert_allclose(restored(x, training=False), model(x, training=False), atol=1e-6)
  if variant == "weight":
    # The restored flag keeps a resumed run from initializing again.
    assert initialize_from_batch(restored, x + 1.0) == []
    for name, value in _state(restored).items():
      np.testing.assert_array_equal(value, expected_state[name], err_msg=name)


class _Serving(tf.Module):
  def __init__(self, model):
    super().__init__()
    self.model = model

  @tf.function(input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32)])
  def serve(self, images):
    return {"logits": self.model(images, training=False)}


@pytest.mark.parametrize("variant", VARIANTS)
def test_saved_model_serves_inference_output_and_keeps_state(variant, tmp_path):
  model, _ = _trained_model(variant)
  export_dir = str(tmp_path / "export")
  serving = _Serving(model)
  tf.saved_model.save(serving, export_dir, signatures={"serving_default": serving.serve})

  loaded = tf.saved_model.load(export_dir)
  x = _images(5, 9)
  served = loaded.signatures["serving_default"](images=x)["logits"]
  np.testing.assert_allclose(served, model(x, training=False), rtol=1e-5, atol=1e-5)

  # The SavedModel's variables are a checkpoint of the module: a fresh model
  # must find every weight (moving statistics, g, init flag) in it.
  fresh = build_model(variant, filters=8, seed=99)
  tf.train.Checkpoint(model=fresh).read(
    f"{export_dir}/variables/variables"
  ).assert_existing_objects_matched()
  expected_state = _state(model)
  for name, value in _state(fresh).items():
    np.testing.assert_array_equal(value, expected_state[name], err_msg=name)


@pytest.mark.parametrize(
  "image_shape, conv_blocks, pooled",
  [
    ((8, 8, 1), 2, None),
    ((28, 28, 1), 1, None),
    ((28, 28, 1), 2, None),
    ((224, 224, 3), 1, (8, 8)),
    ((224, 224, 3), 2, (4, 4)),
    ((40, 100, 3), 1, (2, 4)),
  ],
)
def test_every_image_size_from_8_to_224_builds_trains_and_flattens_at_most_14x14(
  image_shape, conv_blocks, pooled
):
  model = build_model(
    "batch", filters=4, conv_blocks=conv_blocks, image_shape=image_shape, num_classes=3, seed=0
  )
  names = [layer.name for layer in model.layers]
  if pooled is None:
    assert "feature_pool" not in names
  else:
    assert model.get_layer("feature_pool").pool_size == pooled
  assert all(side <= 14 for side in model.get_layer("flatten").input_shape[1:3])
  images = tf.random.stateless_uniform([2, *image_shape], seed=[1, 0])
  train_step, _ = _train_step_fn(model)
  loss, _ = train_step(images, tf.constant([0, 2]))
  assert np.isfinite(loss.numpy())
  assert model(images, training=False).shape == (2, 3)


def test_the_default_network_on_28x28_is_the_notebooks_flatten_then_dense():
  model = build_model("none")
  assert [type(layer).__name__ for layer in model.layers] == [
    "InputLayer",
    "Conv2D",
    "ReLU",
    "MaxPooling2D",
    "Flatten",
    "Dense",
  ]
  assert model.get_layer("logits").kernel.shape == (14 * 14 * 32, 10)


def test_an_image_too_small_for_the_conv_blocks_is_a_clear_error():
  with pytest.raises(ValueError, match=r"8x8 image is too small for conv_blocks=4.*16x16"):
    build_model("batch", conv_blocks=4, image_shape=(8, 8, 1))
