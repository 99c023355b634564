"""The export as the Evaluator uses it: TFMA runs `serve_examples` on ExampleGen's tf.Examples
(image bytes, label and the metadata features) after `transform_features`, on a model whose
classes and image size are not Fashion-MNIST's."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma

from contract import signatures
from contract.features import BYTE_SIZE_KEY
from contract.features import FORMAT_KEY
from contract.features import IMAGE_KEY
from contract.features import LABEL_KEY
from contract.features import DatasetSpec
from tests import serving_model
from trainer.model import build_model

SPEC = DatasetSpec(('ant', 'bee', 'cow', 'dog'), height=12, width=20, channels=3)


def _example(encoded: bytes, label: int) -> bytes:
  """An example as ExampleGen writes it, with some of its metadata features."""
  example = tf.train.Example()
  feature = example.features.feature
  feature[IMAGE_KEY].bytes_list.value.append(encoded)
  feature[LABEL_KEY].int64_list.value.append(label)
  feature[FORMAT_KEY].bytes_list.value.append(b'png')
  feature[BYTE_SIZE_KEY].int64_list.value.append(len(encoded))
  return example.SerializeToString(deterministic=True)


def test_tfma_evaluates_the_export_through_serve_examples_and_transform_features(tmp_path):
  pixels = np.random.default_rng(0).integers(0, 256, (12, *SPEC.image_shape), np.uint8)
  labels = np.arange(12) % SPEC.num_classes
  model = build_model('batch', filters=4, image_shape=SPEC.image_shape, num_classes=4, seed=0)
  model_dir = serving_model.export_version(str(tmp_path), model, 'batch', pixels, spec=SPEC)
  data = str(tmp_path / 'eval.tfrecord')
  with tf.io.TFRecordWriter(data) as out:
    for encoded, label in zip(serving_model.png_files(pixels), labels):
      out.write(_example(encoded, int(label)))
  config = tfma.EvalConfig(
    model_specs=[
      tfma.ModelSpec(
        signature_name=signatures.EXAMPLES_SIGNATURE,
        preprocessing_function_names=[signatures.TRANSFORM_SIGNATURE],
        label_key=LABEL_KEY,
        prediction_key=signatures.PROBABILITIES,
      )
    ],
    slicing_specs=[tfma.SlicingSpec()],
    metrics_specs=[
      tfma.MetricsSpec(
        metrics=[
          tfma.MetricConfig(class_name='ExampleCount'),
          tfma.MetricConfig(class_name='SparseCategoricalAccuracy'),
        ]
      )
    ],
  )
  output = str(tmp_path / 'tfma')
  tfma.run_model_analysis(
    eval_shared_model=tfma.default_eval_shared_model(model_dir, eval_config=config),
    eval_config=config,
    data_location=data,
    output_path=output,
  )
  (overall,) = tfma.load_metrics(output)
  values = {item.key.name: item.value.double_value.value for item in overall.metric_keys_and_values}
  assert values['example_count'] == 12
  probabilities = tf.saved_model.load(model_dir).signatures[signatures.SERVING_SIGNATURE](
    image_bytes=tf.constant(serving_model.png_files(pixels))
  )[signatures.PROBABILITIES]
  expected = np.mean(probabilities.numpy().argmax(axis=1) == labels)
  assert values['sparse_categorical_accuracy'] == pytest.approx(expected)
