"""The project runs on tf_keras (Keras 2), whatever order TensorFlow, TFT and Keras load in."""

import subprocess
import sys

import pytest

IMPORT_ORDERS = [
  'import pipeline, tensorflow as tf',
  'import trainer.model, tensorflow as tf',
  'import tensorflow as tf; import trainer.task',
]


@pytest.mark.parametrize('imports', IMPORT_ORDERS)
def test_tf_keras_is_keras_2_whatever_the_import_order(imports):
  # A fresh interpreter each time: which Keras tf.keras is gets fixed at first use.
  script = (
    f'{imports}\nimport tf_keras\nimport tensorflow_transform\n'
    'from trainer.model import build_model\n'
    'assert tf.keras.__name__.startswith("tf_keras"), tf.keras.__name__\n'
    'assert isinstance(build_model("batch"), tf_keras.Model)\n'
    'assert isinstance(build_model("batch"), tf.keras.Model)\n'
  )
  result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-2000:]
