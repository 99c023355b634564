"""What the pipeline is built for: the data's layout, classes, image size and schema, decided
before the DAG is built (dataset/resolve.py), here from a PipelineConfig."""

import os
from typing import Optional, Sequence

from components.variant_selection import production
from contract.features import DATASET_SPEC_KEY
from contract.features import FASHION_MNIST
from dataset.resolve import ResolvedDataset
from dataset.resolve import fashion_mnist_dataset
from dataset.resolve import resolve
from pipeline.config import PipelineConfig

PROPOSED_SCHEMA = os.path.join('schema', 'proposed_schema.pbtxt')


def served_classes(serving_model_dir: str) -> Optional[Sequence[str]]:
  """The classes of the version TF Serving serves, in label order; None when nothing is served.

  A version exported before models recorded their dataset is a Fashion-MNIST one.
  """
  version = production.in_production(serving_model_dir, warn=lambda _: None)
  if version is None:
    return None
  spec = production.model_info(version.path).get(DATASET_SPEC_KEY)
  return tuple(spec['classes']) if spec else FASHION_MNIST.classes


def resolve_for(config: PipelineConfig) -> ResolvedDataset:
  """The dataset a local run of `config` trains on. Label indices never shift under a served
  model: without an adopted schema, the served version's classes are the list new data must fit."""
  return resolve(
    config.data_dir,
    schema_path=config.schema,
    image_size=config.image_hw,
    channels=config.channels,
    served_classes=served_classes(config.serving_model_dir),
  )


def resolve_for_deployment(config: PipelineConfig) -> ResolvedDataset:
  """The dataset a compiled pipeline of `config` reads. Without an adopted schema, the
  Fashion-MNIST IDX files, and compiling reads nothing; with one (your own images: run them
  locally first and adopt the proposed schema), the data is listed and sampled as for a local
  run, which needs read access to it, and the schema's classes are the label order."""
  if config.schema is None:
    return fashion_mnist_dataset(config.data_dir, config.image_hw, config.channels)
  return resolve(
    config.data_dir,
    schema_path=config.schema,
    image_size=config.image_hw,
    channels=config.channels,
  )


def proposed_schema_path(config: PipelineConfig) -> str:
  return os.path.join(config.output_root, PROPOSED_SCHEMA)
