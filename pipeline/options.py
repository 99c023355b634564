"""Every user option defined once, as a field of the config dataclasses, and read by both surfaces.

A field made with `trainer.config.option(default, doc)` is an option: `fmnist-pipeline run` gets a
flag for it (`learning_rate` → `--learning-rate`, its doc and default as the help) and the deploy
YAML a key of the same name. A field whose metadata says `internal` is neither; one that says
`local_only` is a flag that the deploy YAML refuses. A field added to TrainingConfig or
PipelineConfig therefore appears on both surfaces with no further code, and the values its
`check=` accepts are enforced on both before anything runs: a bad flag stops argparse (usage,
and one line naming the flag), a bad key stops the loader (naming the key).
"""

import argparse
import dataclasses
import functools
import typing
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from trainer.config import ALIASES
from trainer.config import CHECK
from trainer.config import CHOICES
from trainer.config import DOC
from trainer.config import INTERNAL
from trainer.config import LOCAL_ONLY
from trainer.config import value_problem

# A nested dataclass whose options sit at this level (the deploy YAML's pipeline options).
FLATTEN = 'flatten'
# Options of a flattened dataclass that this level requires although they have a default.
REQUIRED = 'required'
# argparse dests of generated flags: this prefix, then the field's dotted path.
_DEST_PREFIX = 'option:'


class ConfigError(ValueError):
  """A config key or value is wrong; the message names the key."""


def option_fields(cls: type) -> List[dataclasses.Field]:
  return [field for field in dataclasses.fields(cls) if INTERNAL not in field.metadata]


def leaf_options(cls: type) -> Dict[str, dataclasses.Field]:
  """Every option of `cls` and its nested groups by name (a flag's name, unique across groups)."""
  found = {}
  for field in option_fields(cls):
    kind, _ = _value_type(cls, field)
    found.update(leaf_options(kind) if dataclasses.is_dataclass(kind) else {field.name: field})
  return found


def _value_type(cls: type, field: dataclasses.Field) -> Tuple[Any, bool]:
  """The field's type without Optional, and whether None is allowed."""
  kind = typing.get_type_hints(cls)[field.name]
  if typing.get_origin(kind) is typing.Union and type(None) in typing.get_args(kind):
    (kind,) = [arg for arg in typing.get_args(kind) if arg is not type(None)]
    return kind, True
  return kind, False


def _is_sequence(kind: Any) -> bool:
  return typing.get_origin(kind) in (tuple, list)


def _default(field: dataclasses.Field) -> Any:
  if field.default_factory is not dataclasses.MISSING:
    return field.default_factory()
  return field.default


def flag(name: str) -> str:
  return '--' + name.replace('_', '-')


def _shown(value: Any) -> str:
  if value is None:
    return 'none'
  if isinstance(value, (tuple, list)):
    return ','.join(map(str, value))
  return str(value)


def _comma_list(choices: Optional[Tuple[str, ...]]):
  def parse(text: str) -> Tuple[str, ...]:
    items = tuple(item.strip() for item in text.split(',') if item.strip())
    unknown = [item for item in items if choices and item not in choices]
    if unknown or not items:
      raise argparse.ArgumentTypeError(
        f'unknown {", ".join(unknown) or "(none given)"}; choose from {", ".join(choices)}'
      )
    return items

  return parse


def checked_type(
  parse: Callable[[str], Any], problem: Callable[[Any], Optional[str]]
) -> Callable[[str], Any]:
  """An argparse `type`: `parse`, then `problem` (e.g. a Range's), so that argparse refuses a
  value outside the accepted ones with the usage and one line naming the flag."""

  def parse_and_check(text: str) -> Any:
    value = parse(text)
    wrong = problem(value)
    if wrong:
      raise argparse.ArgumentTypeError(wrong)
    return value

  # argparse names the type in "invalid int value: 'x'".
  parse_and_check.__name__ = getattr(parse, '__name__', 'value')
  return parse_and_check


def _help(field: dataclasses.Field) -> str:
  check = field.metadata.get(CHECK)
  accepted = f'; {check}' if check else ''
  return f'{field.metadata.get(DOC, "")}{accepted} (default: {_shown(_default(field))})'


def add_arguments(parser: argparse.ArgumentParser, cls: type, path: str = '') -> None:
  """A flag per option of `cls`, nested dataclasses' options included, named by the field alone.

  Flags default to "not given" (argparse.SUPPRESS), so values_from_args returns only what the
  user typed and the dataclass keeps every default; the help shows that default.
  """
  for field in option_fields(cls):
    kind, _ = _value_type(cls, field)
    if dataclasses.is_dataclass(kind):
      add_arguments(parser, kind, f'{path}{field.name}.')
      continue
    choices = field.metadata.get(CHOICES)
    field_problem = functools.partial(value_problem, field)
    arguments: Dict[str, Any] = {
      'dest': f'{_DEST_PREFIX}{path}{field.name}',
      'default': argparse.SUPPRESS,
      'help': _help(field),
    }
    if kind is bool:
      arguments['action'] = argparse.BooleanOptionalAction
    elif _is_sequence(kind):
      arguments.update(type=checked_type(_comma_list(choices), field_problem), metavar='A,B,...')
    else:
      arguments.update(
        type=checked_type(kind, field_problem),
        metavar='{' + ','.join(choices) + '}' if choices else field.name.upper(),
      )
    parser.add_argument(flag(field.name), *field.metadata.get(ALIASES, ()), **arguments)


def values_from_args(args: argparse.Namespace) -> Dict[str, Any]:
  """The options given on the command line, nested like the config file: {'training': {...}}."""
  values: Dict[str, Any] = {}
  for dest, value in vars(args).items():
    if dest.startswith(_DEST_PREFIX):
      *parents, name = dest[len(_DEST_PREFIX) :].split('.')
      level = values
      for parent in parents:
        level = level.setdefault(parent, {})
      level[name] = value
  return values


def merged(base: Mapping[str, Any], override: Mapping[str, Any]) -> Dict[str, Any]:
  """`base` with `override`'s values on top, nested mappings merged key by key."""
  result = dict(base)
  for key, value in override.items():
    if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
      value = merged(result[key], value)
    result[key] = value
  return result


def _checked(value: Any, kind: Any, path: str) -> Any:
  """`value` if it has type `kind`; a YAML int where a float is wanted counts as a float."""
  if _is_sequence(kind):
    (item_kind, *_) = typing.get_args(kind)
    if not isinstance(value, (list, tuple)):
      raise ConfigError(f'{path} must be a list, got {value!r}')
    items = [_checked(item, item_kind, f'{path}[{index}]') for index, item in enumerate(value)]
    return tuple(items) if typing.get_origin(kind) is tuple else items
  if typing.get_origin(kind) is dict:
    key_kind, value_kind = typing.get_args(kind)
    if not isinstance(value, Mapping):
      raise ConfigError(f'{path} must be a mapping, got {value!r}')
    return {
      _checked(key, key_kind, f'{path} key'): _checked(item, value_kind, f'{path}.{key}')
      for key, item in value.items()
    }
  if kind is float and isinstance(value, int) and not isinstance(value, bool):
    return float(value)
  if kind in (int, float, str, bool) and (
    not isinstance(value, kind) or (kind is int and isinstance(value, bool))
  ):
    raise ConfigError(f'{path} must be {kind.__name__}, got {value!r}')
  return value


def _belongs_under(cls: type, name: str, prefix: str) -> str:
  """A hint when `name` is an option of one of cls's nested groups (epochs → training)."""
  for field in option_fields(cls):
    kind, _ = _value_type(cls, field)
    if not dataclasses.is_dataclass(kind):
      continue
    if field.metadata.get(FLATTEN):
      hint = _belongs_under(kind, name, prefix)
      if hint:
        return hint
    elif name in {option.name for option in option_fields(kind)}:
      return f' (an option of {prefix}{field.name}: put it under {field.name}:)'
  return ''


def build(cls: type, values: Any, where: str = '') -> Any:
  """`cls` from a mapping (a parsed config file, or values_from_args), nested dataclasses too.

  Rejects keys `cls` has no option for (listing the known ones), values of the wrong type or
  outside the option's choices and check, and missing required keys, each with the key's dotted
  path.
  """
  prefix = f'{where}.' if where else ''
  if not isinstance(values, Mapping):
    raise ConfigError(f'{where or "the file"} must be a mapping, got {values!r}')
  fields = {field.name: field for field in option_fields(cls)}
  flattened = {name: field for name, field in fields.items() if field.metadata.get(FLATTEN)}
  hints = {name: _value_type(cls, field) for name, field in fields.items()}
  # A flattened group is the pipeline's options inside a deploy config: local-only ones stay out.
  nested_names = {
    name: {
      option.name for option in option_fields(hints[name][0]) if LOCAL_ONLY not in option.metadata
    }
    for name in flattened
  }
  # Fields that are no option here, in this class or in a flattened group, with the reason to show.
  not_options = {
    **{
      field.name: field.metadata[INTERNAL]
      for owner in (cls, *(hints[group][0] for group in flattened))
      for field in dataclasses.fields(owner)
      if INTERNAL in field.metadata
    },
    **{
      field.name: field.metadata[LOCAL_ONLY]
      for group in flattened
      for field in option_fields(hints[group][0])
      if LOCAL_ONLY in field.metadata
    },
  }
  known = ', '.join(sorted((set(fields) - set(flattened)).union(*nested_names.values())))
  built: Dict[str, Any] = {}
  nested_values: Dict[str, Dict[str, Any]] = {name: {} for name in flattened}
  for name, value in values.items():
    path = f'{prefix}{name}'
    owner = next((outer for outer, inner in nested_names.items() if name in inner), None)
    if owner is not None:
      nested_values[owner][name] = value
      continue
    if name not in fields or name in flattened:
      if name in not_options:
        raise ConfigError(f'{path} {not_options[name]}')
      raise ConfigError(f'unknown key {path}{_belongs_under(cls, name, prefix)}; known: {known}')
    kind, optional = hints[name]
    if value is None and optional:
      built[name] = None
    elif dataclasses.is_dataclass(kind):
      built[name] = build(kind, value, path)
    else:
      choices = fields[name].metadata.get(CHOICES)
      if kind is str and isinstance(value, bool) and choices and str(value).lower() in choices:
        value = str(value).lower()  # YAML reads `true` / `false` as booleans
      built[name] = _checked(value, kind, path)
      problem = value_problem(fields[name], built[name])
      if problem:
        raise ConfigError(f'{path} {problem}')
  for name, field in flattened.items():
    required = field.metadata.get(REQUIRED, ())
    absent = [key for key in required if key not in nested_values[name]]
    if absent:
      raise ConfigError(f'missing key {prefix}{absent[0]} (required: {", ".join(required)})')
    built[name] = build(hints[name][0], nested_values[name], where)
  required = [name for name, field in fields.items() if _default(field) is dataclasses.MISSING]
  missing = [name for name in required if name not in built]
  if missing:
    raise ConfigError(f'missing key {prefix}{missing[0]} (required: {", ".join(required)})')
  return cls(**built)
