"""One image's facts, checked by decoding it with TensorFlow's decoder, the one Transform uses.

Whatever passes `inspect` decodes in Transform too: both call
tf.io.decode_image(expand_animations=False) (a GIF's first frame). Every problem is one
DatasetError line naming the file: not an image, corrupt or truncated, over a size limit.
"""

import dataclasses
import re
import struct

import numpy as np
import tensorflow as tf

from dataset.errors import DatasetError

# Magic bytes of the formats tf.io.decode_image reads, the first bytes of every such file.
_MAGIC = (
  (b'\xff\xd8\xff', 'jpeg'),
  (b'\x89PNG\r\n\x1a\n', 'png'),
  (b'GIF87a', 'gif'),
  (b'GIF89a', 'gif'),
  (b'BM', 'bmp'),
)
# Defaults of the max_image_bytes / max_image_pixels options: far above any photo a classifier
# trains on, low enough that one stray file (a scan, a video frame dump) cannot exhaust a worker.
DEFAULT_MAX_IMAGE_BYTES = 20_000_000
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000


@dataclasses.dataclass(frozen=True)
class ImageFacts:
  """What the examples record beside the bytes (contract.features' metadata keys)."""

  format: str
  height: int
  width: int
  channels: int  # as decoded with channels=0: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA (GIF: 3)
  byte_size: int
  mean_intensity: float  # mean of every decoded pixel value, 0..255


@dataclasses.dataclass(frozen=True)
class ImageLimits:
  max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
  max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS


def sniff_format(content: bytes) -> str | None:
  """jpeg / png / gif / bmp by the file's first bytes; None for anything else."""
  for magic, name in _MAGIC:
    if content.startswith(magic):
      return name
  return None


def header_size(content: bytes, image_format: str) -> tuple[int, int] | None:
  """(height, width) from the header alone, so an oversized image is refused before decoding."""
  try:
    if image_format == 'png':
      width, height = struct.unpack('>II', content[16:24])
    elif image_format == 'gif':
      width, height = struct.unpack('<HH', content[6:10])
    elif image_format == 'bmp':
      width, height = struct.unpack('<ii', content[18:26])
    else:
      height, width, _ = tf.io.extract_jpeg_shape(content).numpy().tolist()
  except (struct.error, tf.errors.OpError):
    return None  # a header too short to read: the decoder says what is wrong
  return abs(height), abs(width)


def _decoder_message(error: tf.errors.OpError) -> str:
  """The decoder's own words, without TensorFlow's op and device decorations."""
  message = re.sub(r'\{\{[^}]*\}\}\s*', '', error.message)
  return re.sub(r'\s*\[Op:\w+\]\s*$', '', message).splitlines()[0].strip()


def describe_start(content: bytes) -> str:
  """A short, printable view of a file's first bytes, to show what it is instead of an image."""
  return repr(content[:8])


def inspect(content: bytes, source: str, limits: ImageLimits = ImageLimits()) -> ImageFacts:
  """Checks one encoded image and returns its facts, or raises DatasetError naming `source`."""
  if not content:
    raise DatasetError(source, 'empty file, not an image')
  image_format = sniff_format(content)
  if image_format is None:
    raise DatasetError(
      source,
      f'not an image (starts with {describe_start(content)}); JPEG, PNG, BMP or GIF expected',
    )
  if len(content) > limits.max_image_bytes:
    raise DatasetError(
      source, f'{len(content)} bytes, over max_image_bytes {limits.max_image_bytes}'
    )
  size = header_size(content, image_format)
  if size and size[0] * size[1] > limits.max_image_pixels:
    raise DatasetError(
      source,
      f'{size[0]}x{size[1]} = {size[0] * size[1]} pixels, over max_image_pixels '
      f'{limits.max_image_pixels}',
    )
  try:
    pixels = tf.io.decode_image(content, expand_animations=False).numpy()
  except tf.errors.OpError as error:
    raise DatasetError(
      source, f'corrupt or truncated {image_format.upper()} ({_decoder_message(error)})'
    ) from error
  height, width, channels = pixels.shape
  if height * width > limits.max_image_pixels:  # a header the quick read above did not parse
    raise DatasetError(
      source,
      f'{height}x{width} = {height * width} pixels, over max_image_pixels {limits.max_image_pixels}',
    )
  return ImageFacts(
    format=image_format,
    height=height,
    width=width,
    channels=channels,
    byte_size=len(content),
    mean_intensity=float(pixels.mean(dtype=np.float64)),
  )


def encode_png(pixels: np.ndarray) -> bytes:
  """Lossless PNG of uint8 pixels [H, W] or [H, W, C]: how IDX images travel and are exported.

  One encoder for both, so an IDX image and its PNG export have the same bytes, the same
  content hash and so land in the same split.
  """
  if pixels.ndim == 2:
    pixels = pixels[:, :, np.newaxis]
  return tf.io.encode_png(pixels).numpy()


def pixel_facts(pixels: np.ndarray, png: bytes) -> ImageFacts:
  """The facts of pixels already in hand and their PNG, without decoding it again."""
  height, width = pixels.shape[:2]
  return ImageFacts(
    format='png',
    height=height,
    width=width,
    channels=pixels.shape[2] if pixels.ndim == 3 else 1,
    byte_size=len(png),
    mean_intensity=float(pixels.mean(dtype=np.float64)),
  )
