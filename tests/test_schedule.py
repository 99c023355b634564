"""Scheduled retraining, offline: a deploy config's `schedule` section makes `submit` create a
Vertex AI pipeline schedule (its request checked field by field in the dry run, and against what
aiplatform's PipelineJobSchedule.create sends), `compile` write KFP's recurring-run equivalent
(run through KFP's own client code up to the HTTP call), and each bad schedule value stop both
commands with one line naming the key, nothing compiled or submitted."""

import datetime
import inspect
import json
import os
import re

from google.auth import credentials as auth_credentials
from google.cloud import aiplatform
from google.cloud.aiplatform.compat.types import schedule as gca_schedule
import kfp
import pytest
import yaml

from pipeline import cli
from pipeline import vertex_config
from pipeline import vertex_submit
from pipeline.kubeflow_v2_runner import kfp_package_path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY = {
  'project': 'proj',
  'region': 'europe-west4',
  'image': 'us-docker.pkg.dev/proj/fmnist/pipeline:test',
  'output_root': 'gs://bucket/fmnist',
  'data_dir': 'gs://bucket/data',
  'service_account': 'runner@proj.iam.gserviceaccount.com',
  'labels': {'team': 'vision'},
  'variants': ['batch'],
}
SCHEDULE = {
  'cron': '0 3 * * 1',
  'time_zone': 'Europe/Berlin',
  'max_concurrent_runs': 2,
  'start_time': '2098-12-28T03:00:00+01:00',
  'end_time': '2099-12-31T00:00:00Z',
  'max_runs': 52,
  'display_name': 'fmnist-weekly',
}


def _write(directory, values):
  path = os.path.join(str(directory), 'deploy.yaml')
  with open(path, 'w') as out:
    yaml.safe_dump(values, out)
  return path


def _printed_json(out):
  return json.loads(out[: out.rindex('}') + 1])


@pytest.fixture(scope='module')
def scheduled(tmp_path_factory):
  """A scheduled config and its dry run's output (compiling once for the module)."""
  directory = tmp_path_factory.mktemp('scheduled')
  path = _write(directory, {**DEPLOY, 'schedule': SCHEDULE})
  output = str(directory / 'pipeline.json')
  return path, output


def test_submit_dry_run_prints_the_schedule_request(scheduled, capsys):
  path, output = scheduled
  argv = ['submit', '--config', path, '--output', output, '--dry-run', '--parameter', 'epochs=5']
  assert cli.main(argv) == 0
  out = capsys.readouterr().out
  summary = _printed_json(out)
  request = summary['createScheduleRequest']
  assert request['parent'] == 'projects/proj/locations/europe-west4'
  schedule = request['schedule']
  # The time zone travels as the cron's TZ= prefix, the way Vertex reads it.
  assert schedule['cron'] == 'TZ=Europe/Berlin 0 3 * * 1'
  assert schedule['displayName'] == 'fmnist-weekly'
  assert schedule['maxConcurrentRunCount'] == '2'  # int64: a string in proto JSON
  # Vertex's count of runs started at once is not of runs going on: both are limited.
  assert schedule['maxConcurrentActiveRunCount'] == '2'
  assert 'allowQueueing' not in schedule  # a start due while 2 runs go is skipped
  assert schedule['maxRunCount'] == '52'
  assert schedule['startTime'] == '2098-12-28T02:00:00Z'
  assert schedule['endTime'] == '2099-12-31T00:00:00Z'
  # The PipelineJob every scheduled run is: the one `submit` would start without a schedule.
  inner = schedule['createPipelineJobRequest']
  assert inner['parent'] == request['parent']
  job = inner['pipelineJob']
  assert job['runtimeConfig'] == {
    'gcsOutputDirectory': 'gs://bucket/fmnist/pipeline',
    'parameterValues': {'epochs': 5},
  }
  assert job['labels'] == {'team': 'vision'}
  assert job['serviceAccount'] == 'runner@proj.iam.gserviceaccount.com'
  assert 'pipelineSpec' not in job  # the compiled file itself, left out of the print
  assert 'pipelineJob' not in summary  # no one-off run
  assert summary['consoleUrl'] == (
    'https://console.cloud.google.com/vertex-ai/locations/europe-west4/pipelines/schedules'
    '?project=proj'
  )
  assert out.rstrip().endswith(
    f'nothing was submitted. The schedule would be listed at\n{summary["consoleUrl"]}'
  )


def test_the_dry_run_request_is_what_pipeline_job_schedule_create_sends(scheduled, monkeypatch):
  """Submitting goes through aiplatform's own PipelineJobSchedule.create: its request, caught at
  the API client, is the dry run's, pipeline spec included."""
  path, output = scheduled
  config = vertex_config.load(path)
  assert os.path.exists(output) or cli.main(['compile', '--config', path, '--output', output]) == 0

  sent = []

  class FakeScheduleClient:
    def create_schedule(self, parent, schedule, timeout=None):
      sent.append((parent, type(schedule).deserialize(type(schedule).serialize(schedule))))
      created = type(schedule).deserialize(type(schedule).serialize(schedule))
      created.name = f'{parent}/schedules/1234'
      return created

  monkeypatch.setattr(
    aiplatform.PipelineJobSchedule,
    '_instantiate_client',
    classmethod(lambda cls, **kwargs: FakeScheduleClient()),
  )
  _no_schedules_yet(monkeypatch)
  # The real submit, with credentials as a logged-in user has them (here anonymous ones).
  monkeypatch.setattr(
    aiplatform.initializer.global_config, '_credentials', auth_credentials.AnonymousCredentials()
  )
  url = vertex_submit.submit(config, output, {'epochs': '5'})
  assert url == (
    'https://console.cloud.google.com/vertex-ai/locations/europe-west4/pipelines/schedules/1234'
    '?project=proj'
  )
  ((parent, schedule),) = sent
  expected = vertex_submit.schedule_request(
    vertex_submit.build_schedule(
      config, output, {'epochs': '5'}, credentials=auth_credentials.AnonymousCredentials()
    ),
    vertex_submit.schedule_arguments(config),
  )
  assert parent == expected.parent
  assert schedule == expected.schedule  # field by field, the pipeline spec included
  assert schedule.create_pipeline_job_request.pipeline_job.pipeline_spec


def _no_schedules_yet(monkeypatch, *existing):
  listed = []

  def list_schedules(cls, filter=None, project=None, location=None, **kwargs):
    listed.append((filter, project, location))
    return list(existing)

  monkeypatch.setattr(aiplatform.PipelineJobSchedule, 'list', classmethod(list_schedules))
  return listed


class _Existing:
  """A schedule the region has already: its state and name, and whether it was paused."""

  def __init__(self, schedule_id, state):
    self.resource_name = f'projects/proj/locations/europe-west4/schedules/{schedule_id}'
    self.gca_resource = gca_schedule.Schedule(state=state)
    self.paused = False

  def pause(self):
    self.paused = True


@pytest.fixture
def fake_vertex(monkeypatch):
  """Vertex AI as PipelineJobSchedule reaches it: created schedules recorded, no network."""
  created = []

  class Client:
    def create_schedule(self, parent, schedule, timeout=None):
      created.append(schedule.display_name)
      done = type(schedule).deserialize(type(schedule).serialize(schedule))
      done.name = f'{parent}/schedules/new'
      return done

  monkeypatch.setattr(
    aiplatform.PipelineJobSchedule,
    '_instantiate_client',
    classmethod(lambda cls, **kwargs: Client()),
  )
  monkeypatch.setattr(
    aiplatform.initializer.global_config, '_credentials', auth_credentials.AnonymousCredentials()
  )
  return created


ACTIVE = gca_schedule.Schedule.State.ACTIVE
PAUSED = gca_schedule.Schedule.State.PAUSED


def test_submit_refuses_a_second_active_schedule_of_the_same_name(
  scheduled, capsys, fake_vertex, monkeypatch, traceback_log
):
  """Two active schedules would each retrain every week."""
  path, output = scheduled
  old = _Existing('old', ACTIVE)
  listed = _no_schedules_yet(monkeypatch, _Existing('paused', PAUSED), old)
  assert cli.main(['submit', '--config', path, '--output', output]) == 1
  (line,) = capsys.readouterr().err.splitlines()[-1:]
  assert line.startswith(
    "error: schedule 'fmnist-weekly' is already active in proj/europe-west4 "
    '(https://console.cloud.google.com/vertex-ai/locations/europe-west4/pipelines/schedules/old'
    '?project=proj): pass --replace-schedule to pause it once this one is created, or name this '
    'one otherwise (schedule.display_name)'
  )
  assert listed == [('display_name="fmnist-weekly"', 'proj', 'europe-west4')]
  assert fake_vertex == [] and not old.paused


def test_replace_schedule_creates_the_new_one_then_pauses_the_old(
  scheduled, capsys, fake_vertex, monkeypatch
):
  path, output = scheduled
  old, paused = _Existing('old', ACTIVE), _Existing('paused', PAUSED)
  _no_schedules_yet(monkeypatch, paused, old)
  assert cli.main(['submit', '--config', path, '--output', output, '--replace-schedule']) == 0
  url = 'https://console.cloud.google.com/vertex-ai/locations/europe-west4/pipelines/schedules'
  assert capsys.readouterr().out == (
    f'Schedule created (TZ=Europe/Berlin 0 3 * * 1): {url}/new?project=proj '
    f'(paused the one it replaces: {url}/old?project=proj)\n'
  )
  assert fake_vertex == ['fmnist-weekly'] and old.paused and not paused.paused


def test_replace_schedule_without_a_schedule_is_one_line(tmp_path, capsys):
  path = _write(tmp_path, DEPLOY)
  output = str(tmp_path / 'p.json')
  assert cli.main(['submit', '--config', path, '--output', output, '--replace-schedule']) == 2
  (line,) = capsys.readouterr().err.splitlines()[-1:]
  assert line == f'error: --replace-schedule: {path} has no schedule section to replace'
  assert not os.path.exists(output)


def test_submit_with_a_schedule_creates_it_and_says_where(scheduled, capsys, monkeypatch):
  path, output = scheduled
  calls = []
  monkeypatch.setattr(
    vertex_submit, 'submit', lambda *args: calls.append(args) or 'https://console/schedules/1'
  )
  assert cli.main(['submit', '--config', path, '--output', output]) == 0
  assert capsys.readouterr().out == (
    'Schedule created (TZ=Europe/Berlin 0 3 * * 1): https://console/schedules/1\n'
  )
  assert len(calls) == 1 and calls[0][0].schedule.cron == '0 3 * * 1'


def test_the_defaults_are_utc_one_run_at_a_time_no_end(tmp_path, capsys):
  path = _write(tmp_path, {**DEPLOY, 'schedule': {'cron': '30 2 * * SUN'}})
  output = str(tmp_path / 'p.json')
  assert cli.main(['submit', '--config', path, '--output', output, '--dry-run']) == 0
  schedule = _printed_json(capsys.readouterr().out)['createScheduleRequest']['schedule']
  assert schedule['cron'] == 'TZ=UTC 30 2 * * SUN'
  assert schedule['maxConcurrentRunCount'] == schedule['maxConcurrentActiveRunCount'] == '1'
  assert schedule['displayName'] == 'fashion-mnist-schedule'  # <pipeline_name>-schedule
  assert not {'startTime', 'endTime', 'maxRunCount'} & set(schedule)


def test_without_a_schedule_submit_is_one_run_as_before(tmp_path, capsys):
  path = _write(tmp_path, DEPLOY)
  output = str(tmp_path / 'p.json')
  assert cli.main(['submit', '--config', path, '--output', output, '--dry-run']) == 0
  summary = _printed_json(capsys.readouterr().out)
  assert 'pipelineJob' in summary and 'createScheduleRequest' not in summary


# --- Kubeflow Pipelines: the recurring run ---------------------------------------------------


def test_compile_writes_and_prints_the_kfp_recurring_run(scheduled, capsys):
  path, output = scheduled
  assert cli.main(['compile', '--config', path, '--output', output]) == 0
  out = capsys.readouterr().out
  recurring_path = vertex_config.kfp_recurring_run_path(output)
  assert recurring_path == output[: -len('.json')] + '.kfp-recurring-run.json'
  with open(recurring_path) as source:
    recurring = json.load(source)
  assert recurring['experiment_name'] == 'fashion-mnist'
  assert recurring['create_recurring_run'] == {
    'job_name': 'fmnist-weekly',
    # KFP's cron (robfig/cron) has 6 fields, seconds first.
    'cron_expression': '0 0 3 * * 1',
    'max_concurrency': 2,
    'no_catchup': True,
    'pipeline_package_path': kfp_package_path(output),
    'start_time': '2098-12-28T02:00:00Z',
    'end_time': '2099-12-31T00:00:00Z',
  }
  notes = recurring['notes']
  assert notes[0] == (
    "cron_expression '0 0 3 * * 1' is schedule.cron '0 3 * * 1' with a seconds field first: "
    "KFP's cron (robfig/cron) has 6 fields"
  )
  assert 'CRON_SCHEDULE_TIMEZONE' in notes[1] and 'set that to Europe/Berlin' in notes[1]
  assert (
    notes[2] == 'KFP recurring runs have no run count: max_runs 52 is left out, end_time ends it'
  )
  # The printed snippet is Python that passes exactly these arguments.
  snippet = out[out.index('  import kfp') :]
  snippet = '\n'.join(line[2:] for line in snippet.splitlines() if line.startswith('  '))
  assert snippet == vertex_config.kfp_recurring_run_snippet(recurring)
  compile(snippet, 'snippet', 'exec')
  assert "cron_expression='0 0 3 * * 1'" in snippet
  assert all(f'note: {note}' in out for note in notes)


def test_the_recurring_run_goes_through_kfps_client_to_the_request(scheduled):
  """kfp 2.5's create_recurring_run with the file's arguments: it loads pipeline.kfp.yaml and
  builds the V2beta1RecurringRun; only the HTTP call is replaced."""
  path, output = scheduled
  if not os.path.exists(vertex_config.kfp_recurring_run_path(output)):
    assert cli.main(['compile', '--config', path, '--output', output]) == 0
  with open(vertex_config.kfp_recurring_run_path(output)) as source:
    arguments = json.load(source)['create_recurring_run']
  inspect.signature(kfp.Client.create_recurring_run).bind(None, 'experiment-id', **arguments)
  client = kfp.Client.__new__(kfp.Client)  # no cluster to connect to

  class RecurringRunApi:
    def create_recurring_run(self, body):
      return body

  client._recurring_run_api = RecurringRunApi()
  body = client.create_recurring_run('experiment-id', **arguments)
  assert body.display_name == 'fmnist-weekly'
  assert body.trigger.cron_schedule.cron == '0 0 3 * * 1'
  assert body.trigger.cron_schedule.start_time == '2098-12-28T02:00:00Z'
  assert body.trigger.cron_schedule.end_time == '2099-12-31T00:00:00Z'
  assert body.max_concurrency == 2 and body.no_catchup is True
  assert body.pipeline_spec['pipelineInfo']['name'] == 'fashion-mnist'
  assert body.pipeline_spec['defaultPipelineRoot'] == 'gs://bucket/fmnist/pipeline'


def test_a_utc_schedule_needs_no_time_zone_note_and_a_stale_file_goes(tmp_path, capsys):
  output = str(tmp_path / 'p.json')
  path = _write(tmp_path, {**DEPLOY, 'schedule': {'cron': '0 3 * * 1'}})
  assert cli.main(['compile', '--config', path, '--output', output]) == 0
  out = capsys.readouterr().out
  assert 'CRON_SCHEDULE_TIMEZONE' not in out
  assert os.path.exists(vertex_config.kfp_recurring_run_path(output))
  # The schedule removed from the config: the file that described it goes too.
  path = _write(tmp_path, DEPLOY)
  assert cli.main(['compile', '--config', path, '--output', output]) == 0
  assert 'recurring run' not in capsys.readouterr().out
  assert not os.path.exists(vertex_config.kfp_recurring_run_path(output))


# --- Bad values: one line naming the key, nothing compiled or submitted ----------------------

BAD_SCHEDULES = [
  ({}, 'missing key schedule.cron (required: cron)'),
  (
    {'cron': '0 3 * *'},
    'schedule.cron must be a 5-field cron expression (minute hour day-of-month month '
    "day-of-week), got '0 3 * *'",
  ),
  (
    {'cron': '0 0 3 * * 1'},
    'schedule.cron must be a 5-field cron expression (minute hour day-of-month month '
    "day-of-week), got '0 0 3 * * 1'",
  ),
  (
    {'cron': 'TZ=Europe/Berlin 0 3 * * 1'},
    'schedule.cron must be a 5-field cron expression (minute hour day-of-month month '
    "day-of-week); the time zone goes in schedule.time_zone, got 'TZ=Europe/Berlin 0 3 * * 1'",
  ),
  ({'cron': '0 24 * * *'}, "schedule.cron must have its hour field within 0-23, got '0 24 * * *'"),
  (
    {'cron': '0 3 * * 8'},
    "schedule.cron must have its day-of-week field within 0-6 or SUN-SAT, got '0 3 * * 8'",
  ),
  (
    {'cron': '0 3 * JUNE 1'},
    "schedule.cron must have its month field within 1-12 or JAN-DEC, got '0 3 * JUNE 1'",
  ),
  (
    {'cron': '0 3 0 * *'},
    "schedule.cron must have its day-of-month field within 1-31, got '0 3 0 * *'",
  ),
  (
    {'cron': '*/0 3 * * *'},
    "schedule.cron must have its minute field with steps of at least 1, got '*/0 3 * * *'",
  ),
  (
    {'cron': '0 3 * * FRI-MON'},
    "schedule.cron must have its day-of-week field with ranges going upwards, got '0 3 * * FRI-MON'",
  ),
  (
    {'cron': '0 3 ? * 1'},
    'schedule.cron must have its day-of-month field made of *, N, N-M, */S or N-M/S items '
    "(commas between), got '0 3 ? * 1'",
  ),
  ({'cron': 30}, 'schedule.cron must be str, got 30'),
  (
    {'cron': '0 3 * * 1', 'time_zone': 'CET+1'},
    "schedule.time_zone must be an IANA time zone such as Europe/Berlin or UTC, got 'CET+1'",
  ),
  (
    {'cron': '0 3 * * 1', 'time_zone': 'Europe/Munich'},
    "schedule.time_zone must be an IANA time zone such as Europe/Berlin or UTC, got 'Europe/Munich'",
  ),
  (
    {'cron': '0 3 * * 1', 'max_concurrent_runs': 0},
    'schedule.max_concurrent_runs must be at least 1, got 0',
  ),
  ({'cron': '0 3 * * 1', 'max_runs': 0}, 'schedule.max_runs must be at least 1, got 0'),
  (
    {'cron': '0 3 * * 1', 'end_time': 'next year'},
    'schedule.end_time must be an RFC 3339 time with its offset, e.g. 2027-01-04T03:00:00Z, '
    "got 'next year'",
  ),
  (
    # Without an offset it is no RFC 3339 time (YAML reads it as a naive datetime).
    {'cron': '0 3 * * 1', 'end_time': datetime.datetime(2099, 1, 1)},
    'schedule.end_time must be an RFC 3339 time with its offset, e.g. 2027-01-04T03:00:00Z, '
    "got '2099-01-01T00:00:00'",
  ),
  (
    {'cron': '0 3 * * 1', 'start_time': '2099-02-30T00:00:00Z'},
    'schedule.start_time must be an RFC 3339 time with its offset, e.g. 2027-01-04T03:00:00Z, '
    "got '2099-02-30T00:00:00Z'",
  ),
  (
    {'cron': '0 3 * * 1', 'end_time': '2020-01-01T00:00:00Z'},
    'schedule.end_time must be in the future (no run would start), got 2020-01-01T00:00:00Z',
  ),
  (
    {'cron': '0 3 * * 1', 'start_time': '2099-06-01T00:00:00Z', 'end_time': '2099-01-01T00:00:00Z'},
    'schedule.end_time must be after schedule.start_time, got 2099-01-01T00:00:00Z '
    '(start 2099-06-01T00:00:00Z)',
  ),
  (
    {'cron': '0 3 * * 1', 'display_name': ' '},
    "schedule.display_name must be a name of 1 to 128 characters, got ' '",
  ),
  ({'cron': '0 3 * * 1', 'every': 'week'}, 'unknown key schedule.every; known: cron, '),
  ('weekly', "schedule must be a mapping, got 'weekly'"),
]


@pytest.mark.parametrize('schedule, message', BAD_SCHEDULES)
@pytest.mark.parametrize('command', ['compile', 'submit', 'submit --dry-run'])
def test_a_bad_schedule_value_is_one_line_naming_the_key(
  tmp_path, capsys, monkeypatch, schedule, message, command
):
  submitted = []
  monkeypatch.setattr(vertex_submit, 'submit', lambda *args: submitted.append(args))
  path = _write(tmp_path, {**DEPLOY, 'schedule': schedule})
  output = str(tmp_path / 'pipeline.json')
  assert cli.main([*command.split(), '--config', path, '--output', output]) == 2
  captured = capsys.readouterr()
  (line,) = captured.err.splitlines()
  assert line.startswith(f'error: {path}: {message}'), line
  assert captured.out == '' and not submitted
  assert os.listdir(tmp_path) == ['deploy.yaml']


def test_an_unquoted_time_that_does_not_exist_is_one_line(tmp_path, capsys):
  """YAML reads an unquoted 2099-13-01T00:00:00Z as a time and fails on its month."""
  path = tmp_path / 'deploy.yaml'
  path.write_text(
    yaml.safe_dump(DEPLOY) + 'schedule:\n  cron: 0 3 * * 1\n  end_time: 2099-13-01T00:00:00Z\n'
  )
  assert cli.main(['compile', '--config', str(path), '--output', str(tmp_path / 'p.json')]) == 2
  assert capsys.readouterr().err == (
    f'error: {path}: not valid YAML: a date or time that does not exist (month must be in 1..12)\n'
  )


def test_an_unquoted_yaml_time_is_taken(tmp_path):
  path = tmp_path / 'deploy.yaml'
  path.write_text(
    yaml.safe_dump(DEPLOY) + 'schedule:\n  cron: 0 3 * * 1\n  end_time: 2099-01-01T00:00:00+01:00\n'
  )
  schedule = vertex_config.load(str(path)).schedule
  assert vertex_config.rfc3339(schedule.end_time) == '2098-12-31T23:00:00Z'


# --- The documentation --------------------------------------------------------------------------


def _read(*parts):
  with open(os.path.join(ROOT, *parts)) as source:
    return source.read()


def test_the_example_deploy_files_schedule_section_loads_when_uncommented(tmp_path):
  example = _read('deploy', 'vertex.example.yaml')
  block = example[example.index('# schedule:') :].split('\n\n')[0]
  uncommented = '\n'.join(re.sub(r'^# ?', '', line) for line in block.splitlines())
  section = yaml.safe_load(uncommented)['schedule']
  assert set(section) == {field.name for field in _fields(vertex_config.ScheduleConfig)}
  # The times are the example's; a schedule must end in the future, which they will not always.
  for key in ('start_time', 'end_time'):
    assert vertex_config.Timestamp().problem(section.pop(key)) is None
  path = _write(tmp_path, {**DEPLOY, 'schedule': section})
  assert vertex_config.load(str(path)).schedule == vertex_config.ScheduleConfig(**section)


def _fields(cls):
  import dataclasses  # pylint: disable=import-outside-toplevel

  return dataclasses.fields(cls)


def test_the_local_cron_line_and_timer_in_the_docs_are_valid():
  docs = _read('docs', 'deploy.md')
  section = docs[docs.index('## Scheduled retraining') :]
  (crontab,) = re.findall(r'```sh\n(.*?)```', section, re.DOTALL)
  (cron_line,) = [line for line in crontab.splitlines() if 'fmnist-pipeline run' in line]
  assert vertex_config.Cron().problem(' '.join(cron_line.split()[:5])) is None
  (units,) = re.findall(r'```ini\n(.*?)```', section, re.DOTALL)
  (exec_start,) = re.findall(r'^ExecStart=(.*)$', units, re.MULTILINE)
  # The timer runs the crontab's command.
  assert exec_start in cron_line and exec_start.endswith('--output-root /srv/fmnist/outputs')
  assert 'Persistent=true' in units and 'Type=oneshot' in units
  # Vertex's example in the same section: the config's schedule, converted for KFP.
  assert "cron_expression='0 0 3 * * MON'" in section and 'TZ=Europe/Berlin 0 3 * * MON' in section
