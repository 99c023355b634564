"""Where training runs: the distribution strategy for the devices this process sees."""

import tensorflow as tf


def strategy_for_visible_devices() -> tf.distribute.Strategy:
  """MirroredStrategy over several GPUs, one GPU alone, else the default (CPU) strategy."""
  gpus = tf.config.list_logical_devices('GPU')
  if len(gpus) > 1:
    return tf.distribute.MirroredStrategy([gpu.name for gpu in gpus])
  if len(gpus) == 1:
    return tf.distribute.OneDeviceStrategy(gpus[0].name)
  return tf.distribute.get_strategy()
