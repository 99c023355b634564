"""The tf.Example every ExampleGen writes (contract.features): encoded image, label, metadata."""

import tensorflow as tf

from contract import features
from dataset import images


def to_example(content: bytes, label: int, facts: images.ImageFacts | None = None) -> bytes:
  """Serializes one encoded image with its class index; inspects it when `facts` is not given."""
  if facts is None:
    facts = images.inspect(content, 'image')
  example = tf.train.Example()
  feature = example.features.feature
  feature[features.IMAGE_KEY].bytes_list.value.append(content)
  feature[features.LABEL_KEY].int64_list.value.append(int(label))
  feature[features.HEIGHT_KEY].int64_list.value.append(facts.height)
  feature[features.WIDTH_KEY].int64_list.value.append(facts.width)
  feature[features.CHANNELS_KEY].int64_list.value.append(facts.channels)
  feature[features.BYTE_SIZE_KEY].int64_list.value.append(facts.byte_size)
  feature[features.FORMAT_KEY].bytes_list.value.append(facts.format.encode('ascii'))
  feature[features.MEAN_INTENSITY_KEY].float_list.value.append(facts.mean_intensity)
  # Protobuf orders a map's entries (the features) by a hash seeded per process: the same
  # example got other bytes in each Beam worker process. Sorted, the bytes are the same anywhere.
  return example.SerializeToString(deterministic=True)
