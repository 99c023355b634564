"""What every ExampleGen writes and every later step reads: example keys and the dataset spec.

An example is one encoded image (JPEG, PNG, BMP or GIF bytes, as the user's files hold it;
IDX pixels are encoded as PNG) with its class index and scalar facts about the image, so
StatisticsGen and the schema see sizes, channels, formats and brightness, not opaque bytes.
"""

import dataclasses
import json
from typing import Any, Dict, Tuple

IMAGE_KEY = 'image'
LABEL_KEY = 'label'
HEIGHT_KEY = 'image_height'
WIDTH_KEY = 'image_width'
CHANNELS_KEY = 'image_channels'
BYTE_SIZE_KEY = 'image_byte_size'
FORMAT_KEY = 'image_format'
# Mean of the decoded pixels over every channel, 0..255: a brightness summary drift can compare.
MEAN_INTENSITY_KEY = 'image_mean_intensity'
METADATA_KEYS = (HEIGHT_KEY, WIDTH_KEY, CHANNELS_KEY, BYTE_SIZE_KEY, FORMAT_KEY, MEAN_INTENSITY_KEY)
IMAGE_FORMATS = ('jpeg', 'png', 'bmp', 'gif')
MAX_PIXEL_VALUE = 255
# In every exported version, beside the SavedModel where TF Serving keeps files that are not part
# of the graph: which variant it is, its training options and its DatasetSpec (trainer/export.py).
# Where TF Serving keeps a version's files that are not part of the graph.
ASSETS_EXTRA = 'assets.extra'
MODEL_INFO_FILE = f'{ASSETS_EXTRA}/model_info.json'
# What ExampleGen writes beside its splits: the spec, the data, its layout and the split counts.
DATASET_RECORD = 'dataset.json'
# custom_config key under which ExampleGen, Transform and the Trainers get the DatasetSpec.
DATASET_SPEC_KEY = 'dataset'


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """The classes (label i is classes[i]) and the size every image is decoded and resized to."""

  classes: Tuple[str, ...]
  height: int
  width: int
  channels: int

  def __post_init__(self):
    object.__setattr__(self, 'classes', tuple(self.classes))
    if len(self.classes) < 2:
      raise ValueError(f'a classifier needs at least 2 classes, got {list(self.classes)}')
    if len(set(self.classes)) != len(self.classes):
      raise ValueError(f'class names repeat: {list(self.classes)}')
    if self.channels not in (1, 3):
      raise ValueError(f'channels must be 1 (grayscale) or 3 (RGB), got {self.channels}')
    if min(self.height, self.width) < 1:
      raise ValueError(f'image size must be positive, got {self.height}x{self.width}')

  @property
  def num_classes(self) -> int:
    return len(self.classes)

  @property
  def image_shape(self) -> Tuple[int, int, int]:
    """[height, width, channels]: what Transform outputs and the model takes."""
    return (self.height, self.width, self.channels)

  def to_dict(self) -> Dict[str, Any]:
    return {**dataclasses.asdict(self), 'classes': list(self.classes)}

  @classmethod
  def from_dict(cls, value: Dict[str, Any]) -> 'DatasetSpec':
    return cls(**{field.name: value[field.name] for field in dataclasses.fields(cls)})

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), sort_keys=True)

  @classmethod
  def from_json(cls, text: str) -> 'DatasetSpec':
    return cls.from_dict(json.loads(text))


FASHION_MNIST = DatasetSpec(
  classes=(
    'T-shirt/top',
    'Trouser',
    'Pullover',
    'Dress',
    'Coat',
    'Sandal',
    'Shirt',
    'Sneaker',
    'Bag',
    'Ankle boot',
  ),
  height=28,
  width=28,
  channels=1,
)


def spec_from_custom_config(custom_config: Dict[str, Any]) -> DatasetSpec:
  """The DatasetSpec a component got in its custom_config (Fashion-MNIST's if none)."""
  value = (custom_config or {}).get(DATASET_SPEC_KEY)
  if value is None:
    return FASHION_MNIST
  return DatasetSpec.from_json(value) if isinstance(value, str) else DatasetSpec.from_dict(value)
