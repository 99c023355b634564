"""The Fashion-MNIST TFX pipeline: DAG definition, configuration and runners."""

import os

# TFT 1.16 sets this on import anyway; setting it first makes tf.keras the same tf_keras everywhere.
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
