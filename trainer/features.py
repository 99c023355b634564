"""The data contract shared by ExampleGen, the schema, Transform, the model and serving."""

IMAGE_KEY = 'image'
LABEL_KEY = 'label'
IMAGE_HEIGHT = 28
IMAGE_WIDTH = 28
IMAGE_CHANNELS = 1
PIXELS_PER_IMAGE = IMAGE_HEIGHT * IMAGE_WIDTH * IMAGE_CHANNELS
MAX_PIXEL_VALUE = 255
NUM_CLASSES = 10
CLASS_NAMES = (
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
)
# In every exported version, beside the SavedModel where TF Serving keeps files that are not part
# of the graph: which variant it is and its training options (trainer/export.py writes it).
MODEL_INFO_FILE = 'assets.extra/model_info.json'
