"""Command-line flags generated from `k4p1.core.RunConfig`, and the config they give.

Every field of `RunConfig` is a flag of the same name, type, default and help
(the field's `help` metadata): a setting is declared once, in the config.
`build_config` starts from the defaults, applies `--config=<name>`
(`experiments/configs/<name>.py`, or a table row `<name>@<row>`), then the
flags given on the command line. An entry point defines the flags in its
`main` (`define_flags`), never at import. Nothing here imports TensorFlow.
"""

import dataclasses
import shlex
import typing

from absl import flags

from experiments import configs
from k4p1 import core

FLAGS = flags.FLAGS
CONFIG_FLAGS = core.RunConfig.field_names()
_FIELDS = {f.name: f for f in dataclasses.fields(core.RunConfig)}


def _base_type(annotation):
  args = [a for a in typing.get_args(annotation) if a is not type(None)]
  return args[0] if typing.get_origin(annotation) is typing.Union else annotation


def _flag_default(name: str, value):
  """A config value as its flag's default (tuples as lists, "" as unset)."""
  if value == "":
    return None
  if isinstance(value, (tuple, list)) and _base_type(_FIELDS[name].type) is tuple:
    return list(value) or None
  return value


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
  """Defines `--config` and one flag per `RunConfig` field (once: a no-op after)."""
  if "config" in flag_values:
    return
  flags.DEFINE_string("config", None, "Config from experiments/configs/ (name, "
                      "name@row or .py path) to start from; flags override it.",
                      flag_values=flag_values)
  for field in dataclasses.fields(core.RunConfig):
    kind, help_text = _base_type(field.type), field.metadata["help"]
    default = _flag_default(field.name, field.default)
    args = dict(flag_values=flag_values)
    if "choices" in field.metadata:
      flags.DEFINE_enum(field.name, default, field.metadata["choices"],
                        help_text, **args)
    elif kind is bool:
      flags.DEFINE_bool(field.name, default, help_text, **args)
    elif kind is int:
      flags.DEFINE_integer(field.name, default, help_text, **args)
    elif kind is float:
      flags.DEFINE_float(field.name, default, help_text, **args)
    elif kind is tuple:
      flags.DEFINE_list(field.name, default, help_text, **args)
    else:
      flags.DEFINE_string(field.name, default, help_text, **args)


def start_from(config: str, flag_values: flags.FlagValues = FLAGS) -> None:
  """Makes `config` the default of `--config`, and its values the flags' defaults.

  What `build_config` gives is unchanged by the flags' defaults (it reads the
  config itself); they make `--help` show the values a run starts from.
  """
  flag_values.set_default("config", config)
  for name, value in configs.load_overrides(config).items():
    flag_values.set_default(name, _flag_default(name, value))


def _given(flag_values: flags.FlagValues, names) -> list:
  """The flags among `names` that were set on the command line (or by a test)."""
  return [n for n in names if n in flag_values and
          (flag_values[n].present or not flag_values[n].using_default_value)]


def _value(flag_values: flags.FlagValues, name: str):
  """A flag's value in its config field's type (lists become tuples)."""
  value = flag_values[name].value
  field = _FIELDS[name]
  if value is None or _base_type(field.type) is not tuple:
    if name == "jit_compile" and value in ("true", "false"):
      return value == "true"
    return value
  element = field.metadata.get("element", str)
  try:
    return tuple(element(v) for v in value)
  except ValueError:
    raise ValueError(f"--{name} must be {element.__name__}s separated by "
                     f"commas, got {','.join(value)!r}.") from None


def build_config(flag_values: flags.FlagValues = FLAGS) -> core.RunConfig:
  """Defaults <- `--config` overrides <- the flags that were given.

  A given flag replaces the settings it excludes (`core.merge_overrides`):
  `--train_steps` clears a config's `train_epochs`, `--tasks` its `dataset`.

  Raises:
    ValueError: an unknown config or field (naming the choices).
  """
  overrides = {}
  if flag_values["config"].value:
    overrides = configs.load_overrides(flag_values["config"].value)
  given = {n: _value(flag_values, n) for n in _given(flag_values, CONFIG_FLAGS)}
  return core.RunConfig().replace(**core.merge_overrides(overrides, given))


def command_line(module: str, flag_values: flags.FlagValues = FLAGS,
                 extra=()) -> str:
  """The command that reproduces this run: the module and the flags given.

  Args:
    module: the entry point, e.g. "experiments.run".
    flag_values: the parsed flags.
    extra: names of the entry point's own flags (besides the config's).
  """
  given = [flag_values[n].serialize()
           for n in _given(flag_values, ("config",) + CONFIG_FLAGS + tuple(extra))]
  return shlex.join(["python", "-m", module] + given)
