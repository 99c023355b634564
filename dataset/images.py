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
# Defaults of the max_image_bytes / max_image_pixels options: the bytes are Vertex AI's limit for
# a training image (30 MB); both far above any photo a classifier trains on, low enough that one
# stray file (a scan, a panorama) cannot exhaust a worker.
DEFAULT_MAX_IMAGE_BYTES = 30_000_000
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


def _check_before_decoding(content: bytes, source: str, limits: ImageLimits) -> str:
  """The format, after the checks that need no decoding: empty, not an image, over a limit."""
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
  if size:
    _check_pixels(size[0], size[1], source, limits)
  return image_format


def _check_pixels(height: int, width: int, source: str, limits: ImageLimits) -> None:
  if height * width > limits.max_image_pixels:
    raise DatasetError(
      source,
      f'{height}x{width} = {height * width} pixels, over max_image_pixels '
      f'{limits.max_image_pixels}',
    )


def _facts(content, image_format, height, width, channels, mean, source, limits) -> ImageFacts:
  _check_pixels(height, width, source, limits)  # again: a header the quick read did not parse
  return ImageFacts(image_format, int(height), int(width), int(channels), len(content), float(mean))


def inspect(content: bytes, source: str, limits: ImageLimits = ImageLimits()) -> ImageFacts:
  """Checks one encoded image and returns its facts, or raises DatasetError naming `source`."""
  image_format = _check_before_decoding(content, source, limits)
  try:
    pixels = tf.io.decode_image(content, expand_animations=False).numpy()
  except tf.errors.OpError as error:
    raise DatasetError(
      source, f'corrupt or truncated {image_format.upper()} ({_decoder_message(error)})'
    ) from error
  # Integer pixels sum exactly in float64: the same mean as the batch decoder's.
  mean = pixels.mean(dtype=np.float64)
  return _facts(content, image_format, *pixels.shape, mean, source, limits)


@tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
def _decoded_shapes_and_means(contents: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  def shape_and_mean(content):
    pixels = tf.io.decode_image(content, expand_animations=False)
    # Cast: a shape tensor written into the map's output list upsets graph type inference.
    return tf.cast(tf.shape(pixels), tf.int64), tf.reduce_mean(tf.cast(pixels, tf.float64))

  return tf.map_fn(
    shape_and_mean,
    contents,
    fn_output_signature=(tf.TensorSpec([3], tf.int64), tf.TensorSpec([], tf.float64)),
  )


def inspect_batch(
  contents: list[bytes], sources: list[str], limits: ImageLimits = ImageLimits()
) -> list[ImageFacts | DatasetError]:
  """inspect() of many images, each its facts or its DatasetError, with one decoder call.

  One TensorFlow call per batch instead of per image (a third of the time on small images).
  When any image in it fails to decode, the batch is inspected again one by one, so each
  problem names its own file.
  """
  results: list[ImageFacts | DatasetError | None] = [None] * len(contents)
  formats = {}
  for index, (content, source) in enumerate(zip(contents, sources)):
    try:
      formats[index] = _check_before_decoding(content, source, limits)
    except DatasetError as error:
      results[index] = error
  if not formats:
    return results
  try:
    shapes, means = _decoded_shapes_and_means(tf.constant([contents[i] for i in formats]))
  except tf.errors.OpError:
    for index in formats:
      try:
        results[index] = inspect(contents[index], sources[index], limits)
      except DatasetError as error:
        results[index] = error
    return results
  for index, shape, mean in zip(formats, shapes.numpy().tolist(), means.numpy().tolist()):
    try:
      results[index] = _facts(contents[index], formats[index], *shape, mean, sources[index], limits)
    except DatasetError as error:
      results[index] = error
  return results


def encode_png(pixels: np.ndarray) -> bytes:
  """Lossless PNG of uint8 pixels [H, W] or [H, W, C]: how IDX images travel and are exported.

  One encoder for both, so an IDX image and its PNG export have the same bytes, the same
  content hash and so land in the same split.
  """
  return encode_pngs(pixels[np.newaxis])[0]


@tf.function(input_signature=[tf.TensorSpec([None, None, None, None], tf.uint8)])
def _encoded_pngs(pixels: tf.Tensor) -> tf.Tensor:
  return tf.map_fn(tf.io.encode_png, pixels, fn_output_signature=tf.TensorSpec([], tf.string))


def encode_pngs(pixels: np.ndarray) -> list[bytes]:
  """encode_png of each of uint8 pixels [N, H, W] or [N, H, W, C] (the same bytes), at once."""
  if pixels.ndim == 3:
    pixels = pixels[..., np.newaxis]
  return _encoded_pngs(pixels).numpy().tolist()


def pixel_facts(pixels: np.ndarray, pngs: list[bytes]) -> list[ImageFacts]:
  """The facts of pixels [N, H, W(, C)] already in hand and their PNGs, without decoding."""
  height, width = pixels.shape[1:3]
  channels = pixels.shape[3] if pixels.ndim == 4 else 1
  means = pixels.reshape(len(pixels), -1).mean(axis=1, dtype=np.float64).tolist()
  return [
    ImageFacts('png', height, width, channels, len(png), mean) for png, mean in zip(pngs, means)
  ]
