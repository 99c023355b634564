"""Training-time augmentation: random left-right mirroring, reproducible from the seed."""

import tensorflow as tf


def random_mirror(batches: tf.data.Dataset, seed: int) -> tf.data.Dataset:
  """Mirrors each image of each (images, labels) batch left-right with probability 1/2.

  Right for classes whose mirror image is still of the class (Fashion-MNIST's
  clothes, shoes and bags; most photographed objects); wrong for digits, text
  or anything with a handedness, where the random_mirror option must be off.
  The draw for batch i depends only on (seed, i): the same seed gives the same
  stream, and skipping i batches (as resuming from a checkpoint does) lands on
  the same draws as training straight through.
  """

  def mirror(index, batch):
    images, labels = batch
    draw_seed = tf.stack([tf.constant(seed, tf.int64), index])
    return tf.image.stateless_random_flip_left_right(images, seed=draw_seed), labels

  return batches.enumerate().map(mirror, num_parallel_calls=tf.data.AUTOTUNE)
