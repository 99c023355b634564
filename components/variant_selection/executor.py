"""VariantSelector's executor: evaluates the model in production and every variant on the same
eval examples, times their serving signatures, gates and selects, copies the winner, evaluates it
on the test split and writes the report."""

import json
import math
import os
import time
from typing import Any, Dict, List, Optional, Sequence

from absl import logging
import tensorflow as tf
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils
from tfx.utils import path_utils

from components.variant_selection import dataset_facts
from components.variant_selection import evaluation
from components.variant_selection import held_out
from components.variant_selection import keys
from components.variant_selection import model_card
from components.variant_selection import production
from components.variant_selection import report
from components.variant_selection import seeds
from components.variant_selection import selection
from contract.features import DATASET_RECORD
from components.drift_gate import DRIFT_FILE as DRIFT_RECORD
from contract.features import DATASET_SPEC_KEY
from contract.features import LABEL_KEY
from contract.features import MODEL_INFO_FILE
from contract.features import DatasetSpec
from pipeline.config import PipelineConfig
from serving import latency
from serving import requests
from trainer.config import check_run_time_parameters
from trainer.summaries import HISTORY_FILE
from trainer.summaries import TOTALS_PHASE

# The property names TFX's Evaluator uses on a ModelBlessing, which Pusher reads.
BLESSED = 'blessed'
CURRENT_MODEL = 'current_model'
CURRENT_MODEL_ID = 'current_model_id'
BLESSED_FILE = 'BLESSED'
NOT_BLESSED_FILE = 'NOT_BLESSED'
SELECTED_VARIANT = 'selected_variant'
# Requests timed per model: one example, and a batch as a busy client or TF Serving's batching
# sends them.
LATENCY_BATCH_SIZES = (1, 64)
PRODUCTION = 'production'


class NoComparableVariantError(ValueError):
  """No variant's evaluation has the selection metric."""


def _read_json(path: str) -> Any:
  with tf.io.gfile.GFile(path) as file:
    return json.load(file)


def _trained_classes(model_info: Dict[str, Any]) -> Optional[List[str]]:
  """The classes a model was trained on, from its model_info.json; None when it does not say."""
  spec = model_info.get(DATASET_SPEC_KEY)
  return None if spec is None else list(spec['classes'])


def _dataset(
  examples: types.Artifact, model_infos: Dict[str, Dict[str, Any]]
) -> dataset_facts.DatasetFacts:
  """The data's facts from ExampleGen's dataset.json, else the spec of the first variant's model
  (classes and size only); every variant must have been trained on those classes."""
  facts = dataset_facts.read(examples.uri)
  if facts is None:
    variant, model_info = next(iter(model_infos.items()))
    if DATASET_SPEC_KEY not in model_info:
      raise ValueError(
        f'no class names: neither {os.path.join(examples.uri, DATASET_RECORD)} nor '
        f'variant {variant}\'s {MODEL_INFO_FILE} (key "{DATASET_SPEC_KEY}") exists'
      )
    facts = dataset_facts.DatasetFacts(DatasetSpec.from_dict(model_info[DATASET_SPEC_KEY]))
  for variant, model_info in model_infos.items():
    trained = _trained_classes(model_info)
    if trained is not None and trained != list(facts.classes):
      raise ValueError(
        f'variant {variant} was trained on the classes {trained}, the examples have '
        f'{list(facts.classes)}'
      )
  return facts


def _record_spans(model_dir: str, spans: Sequence[int]) -> None:
  """Adds the spans the model was trained on to its model_info.json (the Trainer sees only
  transformed examples; the selector has ExampleGen's record of them)."""
  path = os.path.join(model_dir, MODEL_INFO_FILE)
  info = _read_json(path)
  with tf.io.gfile.GFile(path, 'w') as out:
    json.dump({**info, 'spans': list(spans)}, out, indent=1)


def _spans_and_drift(examples_uri: str) -> Dict[str, Any]:
  """With spans: dataset.json's record of them and the drift gate's drift.json, for the report
  (and through it the model card and push record)."""
  found = {}
  dataset_record = os.path.join(examples_uri, DATASET_RECORD)
  if tf.io.gfile.exists(dataset_record):
    spans = _read_json(dataset_record).get('spans')
    if spans:
      found['spans'] = {key: spans.get(key) for key in ('newest', 'train', 'previous')}
  drift_record = os.path.join(examples_uri, DRIFT_RECORD)
  if tf.io.gfile.exists(drift_record):
    found['drift'] = _read_json(drift_record)
  return found


def _check_production_classes(path: str, classes: Sequence[str]) -> None:
  """A production model with other classes answers with other label indices: comparing its
  accuracy on these examples would mean nothing, and replacing it would change what clients
  get for the same index."""
  served = _trained_classes(production.model_info(path))
  if served is not None and served != list(classes):
    raise ValueError(
      f'the production model {path} serves the classes {served}, the examples have '
      f'{list(classes)}: serve this data under another serving model directory'
    )


def _variant_report(
  variant: str,
  model_info: Dict[str, Any],
  model_run: types.Artifact,
  evaluation_artifact: types.Artifact,
  gate: selection.Gate,
  serving_latency: Dict[int, latency.Latency],
  classes: Sequence[str],
) -> report.VariantReport:
  metrics = evaluation.read_metrics(evaluation_artifact.uri, LABEL_KEY)
  history = _read_json(os.path.join(model_run.uri, HISTORY_FILE))
  totals = _totals(history)
  return report.VariantReport(
    result=selection.judge(variant, metrics.overall, gate),
    per_class_accuracy={
      name: metrics.by_label.get(label, {}).get(selection.ACCURACY, math.nan)
      for label, name in enumerate(classes)
    },
    parameters=model_info['parameters'],
    train_seconds=totals.get('seconds', math.nan),
    images_per_second=totals.get('images_per_second', math.nan),
    history=history,
    intervals=metrics.overall_intervals,
    per_class_intervals={
      name: metrics.by_label_intervals[label][selection.ACCURACY]
      for label, name in enumerate(classes)
      if selection.ACCURACY in metrics.by_label_intervals.get(label, {})
    },
    latency=serving_latency,
  )


def _totals(history: List[Dict[str, float]]) -> Dict[str, float]:
  """The whole run's record the Trainer writes last (time, throughput); empty if it has none."""
  totals = [record for record in history if record['phase'] == TOTALS_PHASE]
  return totals[-1] if totals else {}


def _seed_runs(
  input_dict: Dict[str, List[types.Artifact]],
  exec_properties: Dict[str, Any],
  rows: List[report.VariantReport],
) -> Optional[Dict[str, List[seeds.SeedRun]]]:
  """Each variant's runs, the configured seed's (the row) first; None with one seed."""
  if not exec_properties.get(keys.SEEDS):
    return None
  selection_seed, *extra_seeds = json.loads(exec_properties[keys.SEEDS])
  runs = {}
  for row in rows:
    variant = row.result.variant
    runs[variant] = [seeds.SeedRun(selection_seed, row.result.metrics, row.train_seconds)]
    for seed in extra_seeds:
      model_run, evaluation_artifact = (
        artifact_utils.get_single_instance(input_dict[keys.seed_input_key(kind, variant, seed)])
        for kind in keys.PER_EXTRA_SEED
      )
      history = _read_json(os.path.join(model_run.uri, HISTORY_FILE))
      metrics = evaluation.read_metrics(evaluation_artifact.uri, LABEL_KEY).overall
      runs[variant].append(seeds.SeedRun(seed, metrics, _totals(history).get('seconds', math.nan)))
  return runs


def _split_files(examples: types.Artifact, split: str) -> List[str]:
  return tf.io.gfile.glob(os.path.join(artifact_utils.get_split_uri([examples], split), '*'))


def _eval_on_same_examples(
  model_dirs: Dict[str, str], eval_files: List[str], classes: Sequence[str]
) -> Dict[str, held_out.HeldOutResult]:
  """Each model through serve_examples on the eval split: metrics and per-example correctness."""
  results = {
    name: held_out.evaluate(path, eval_files, classes) for name, path in model_dirs.items()
  }
  lengths = {result.examples for result in results.values()}
  if len(lengths) > 1:
    raise ValueError(f'the models saw different numbers of eval examples: {sorted(lengths)}')
  return results


def check_gate_parameters(exec_properties: Dict[str, Any]) -> None:
  """The gate's thresholds can be pipeline parameters set per run (Vertex AI, Kubeflow), which
  take any number: checked against their options' ranges before anything is evaluated."""
  check_run_time_parameters(
    PipelineConfig,
    {
      name: float(exec_properties[name])
      for name in (keys.ACCURACY_THRESHOLD, keys.MAX_ACCURACY_DROP, keys.SIGNIFICANCE_LEVEL)
    },
  )


def _write_blessing(blessing: types.Artifact, model: types.Artifact, variant: str, blessed: bool):
  """Marks the blessing the way TFX's Evaluator does, naming the Trainer's model."""
  io_utils.write_string_file(
    os.path.join(blessing.uri, BLESSED_FILE if blessed else NOT_BLESSED_FILE), ''
  )
  blessing.set_int_custom_property(BLESSED, int(blessed))
  blessing.set_string_custom_property(CURRENT_MODEL, model.uri)
  blessing.set_int_custom_property(CURRENT_MODEL_ID, model.id)
  blessing.set_string_custom_property(SELECTED_VARIANT, variant)


class Executor(base_executor.BaseExecutor):
  """Selection reads only the eval-split evaluations; the test split is read after it."""

  def Do(
    self,
    input_dict: Dict[str, List[types.Artifact]],
    output_dict: Dict[str, List[types.Artifact]],
    exec_properties: Dict[str, Any],
  ) -> None:
    check_gate_parameters(exec_properties)
    variants = json.loads(exec_properties[keys.VARIANTS])
    metric = exec_properties[keys.SELECTION_METRIC]
    policy = selection.Policy(
      significance_level=float(exec_properties[keys.SIGNIFICANCE_LEVEL]),
      replace_production=exec_properties[keys.REPLACE_PRODUCTION],
    )
    examples = artifact_utils.get_single_instance(input_dict[keys.EXAMPLES])
    eval_files = _split_files(examples, exec_properties[keys.EVAL_SPLIT])

    def single(kind: str, variant: str) -> types.Artifact:
      return artifact_utils.get_single_instance(input_dict[keys.input_key(kind, variant)])

    model_dirs = {
      variant: path_utils.serving_model_path(single(keys.MODEL, variant).uri)
      for variant in variants
    }
    model_infos = {
      variant: _read_json(os.path.join(model_dir, MODEL_INFO_FILE))
      for variant, model_dir in model_dirs.items()
    }
    dataset = _dataset(examples, model_infos)
    classes = dataset.classes
    logging.info('%d classes: %s', len(classes), ', '.join(classes))
    serving_model_dir = exec_properties[keys.SERVING_MODEL_DIR]
    skipped = []

    def skip(line: str) -> None:
      logging.warning('%s', line)
      skipped.append(line)

    served = production.in_production(serving_model_dir, warn=skip)
    if served is not None:
      _check_production_classes(served.path, classes)
      if DATASET_SPEC_KEY not in production.model_info(served.path):
        skip(
          f'{served.path}: exported before examples carried encoded images (its model_info.json '
          'has no dataset), so it cannot be evaluated on these examples; only the accuracy '
          'threshold applies and a blessed candidate replaces it'
        )
        served = None
    production_path = served.path if served else None
    if served is None:
      logging.info('No model under %s yet: only the accuracy threshold applies.', serving_model_dir)
    else:
      logging.info('Production: %s, %s', served.path, served.reason)
    measured = dict(model_dirs, **({PRODUCTION: production_path} if production_path else {}))
    # Per-example correctness of every model on the same eval examples, for the paired tests.
    started = time.perf_counter()
    on_eval = _eval_on_same_examples(measured, eval_files, classes)
    evaluated = time.perf_counter()
    serving_latency = latency.serving_latency(
      measured,
      requests.encoded_images(held_out.first_records(eval_files, max(LATENCY_BATCH_SIZES))),
      LATENCY_BATCH_SIZES,
      repeats=int(exec_properties[keys.LATENCY_REPEATS]),
    )
    logging.info(
      '%d models: eval split through serve_examples in %.1f s, serving latency in %.1f s',
      len(measured),
      evaluated - started,
      time.perf_counter() - evaluated,
    )
    in_service = None
    if production_path is not None:
      in_service = report.Production(
        path=production_path,
        eval=on_eval[PRODUCTION],
        latency=serving_latency[PRODUCTION],
        reason=served.reason,
        skipped=skipped,
      )
      logging.info(
        'Production model %s on the eval split: %s', production_path, in_service.eval.metrics
      )
    gate = selection.Gate(
      accuracy_threshold=float(exec_properties[keys.ACCURACY_THRESHOLD]),
      production_accuracy=None
      if in_service is None
      else in_service.eval.metrics[selection.ACCURACY],
      max_accuracy_drop=float(exec_properties[keys.MAX_ACCURACY_DROP]),
    )
    rows = [
      _variant_report(
        variant,
        model_infos[variant],
        single(keys.MODEL_RUN, variant),
        single(keys.EVALUATION, variant),
        gate,
        serving_latency[variant],
        classes,
      )
      for variant in variants
    ]
    production_digest = production.saved_model_digest(production_path) if production_path else None
    candidates = [
      selection.Candidate(
        result=row.result,
        correct=on_eval[row.result.variant].correct,
        latency=serving_latency[row.result.variant][1],
        parameters=row.parameters,
        is_production=production_digest is not None
        and production.saved_model_digest(model_dirs[row.result.variant]) == production_digest,
      )
      for row in rows
    ]
    chosen = selection.select(
      candidates,
      metric,
      policy,
      None
      if in_service is None
      else selection.ProductionModel(
        accuracy=in_service.eval.metrics[selection.ACCURACY],
        correct=in_service.eval.correct,
        latency=in_service.latency[1],
      ),
    )
    candidate = chosen.winner or chosen.best_overall
    if candidate is None:
      available = sorted({name for row in rows for name in row.result.metrics})
      raise NoComparableVariantError(
        f'no variant has the selection metric {metric!r}; the evaluations have {available}'
      )
    for variant in variants:
      logging.info('%s: %s', variant, chosen.verdicts[variant])
    logging.info('%s', chosen.decision)

    selected_model = single(keys.MODEL, candidate)
    output_model = artifact_utils.get_single_instance(output_dict[keys.MODEL])
    io_utils.copy_dir(model_dirs[candidate], path_utils.serving_model_path(output_model.uri))
    output_model.set_string_custom_property(SELECTED_VARIANT, candidate)
    _write_blessing(
      artifact_utils.get_single_instance(output_dict[keys.BLESSING]),
      selected_model,
      candidate,
      blessed=chosen.push,
    )

    test_result = None
    if chosen.winner is not None:
      test_files = _split_files(examples, exec_properties[keys.TEST_SPLIT])
      test_result = held_out.evaluate(
        path_utils.serving_model_path(output_model.uri), test_files, classes
      )
      logging.info('%s on the test split: %s', chosen.winner, test_result.metrics)
    report_artifact = artifact_utils.get_single_instance(output_dict[keys.REPORT])
    spans_and_drift = _spans_and_drift(examples.uri)
    report.write(
      report_artifact.uri,
      dataset,
      rows,
      chosen,
      test_result,
      in_service,
      seed_runs=_seed_runs(input_dict, exec_properties, rows),
      **spans_and_drift,
    )
    output_model_dir = path_utils.serving_model_path(output_model.uri)
    if 'spans' in spans_and_drift:
      _record_spans(output_model_dir, spans_and_drift['spans']['train'])
    model_card.write(report_artifact.uri, output_model_dir, examples.uri, exec_properties)
