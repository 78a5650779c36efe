"""Experiment configs: each module's `get_config()` returns overrides of defaults.

A config names the settings of one paper table or row; flags given on the
command line override it. `--config=<name>` loads `experiments/configs/<name>.py`
(or any `.py` file path).

A *table* config also defines `get_rows() -> list[dict]`: one dict per table
row, each a set of overrides on top of `get_config()`, optionally with a
"row_id". `--config=<name>@<row_id>` (or `<name>@<index>`) loads
`get_config()` merged with that row, which is how `experiments.launch` hands a
row to the entry point (`experiments.run`, `ENTRY_POINT`). The kind of run is
read from the row's fields (`RunConfig.experiment`, `row_kind`); an "entry"
key, which older configs give to name their entry point, is ignored. A config
whose module sets `REQUIRED_FLAGS` (e.g. `("weights",)`) holds a
`required(...)` placeholder there that the user must replace with a flag.
Nothing here imports TensorFlow.
"""

import importlib
import importlib.util
import os
import pkgutil

from k4p1 import core
from k4p1.core import run_kinds

# The module that runs every row, whatever its kind of run.
ENTRY_POINT = "experiments.run"
# Row keys that are not config fields (never passed to a run's config):
# "row_id" names the row's workdir; "entry" is ignored (older configs named
# their entry point with it).
LAUNCH_KEYS = ("entry", "row_id")
ROW_SEPARATOR = "@"
_REQUIRED_PREFIX = "REQUIRED: pass "


def available() -> list:
  """Names of the configs in this package."""
  return sorted(m.name for m in pkgutil.iter_modules(__path__)
                if not m.name.startswith("_"))


def required(flag: str, example: str) -> str:
  """A placeholder for a setting the user must give as `--<flag>=...`.

  It is not a valid value (no such file, no checkpoint prefix), so a run that
  was not given the flag fails validation before building anything, with a
  message that shows this text.
  """
  return f"{_REQUIRED_PREFIX}--{flag}={example}"


def is_required_placeholder(value) -> bool:
  return isinstance(value, str) and value.startswith(_REQUIRED_PREFIX)


def split_name(name: str):
  """"cpu_scale@3" -> ("cpu_scale", "3"); "cpu_scale" -> ("cpu_scale", None)."""
  if ROW_SEPARATOR in name and not name.endswith(".py"):
    base, _, row = name.rpartition(ROW_SEPARATOR)
    return base, row
  return name, None


def load_module(name: str):
  """Imports the config `name` (a module here or a .py path).

  Raises:
    ValueError: no such config.
  """
  if name.endswith(".py"):
    if not os.path.isfile(name):
      raise ValueError(f"Config file {name!r} does not exist.")
    spec = importlib.util.spec_from_file_location("k4p1_user_config", name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
  if name in available():
    return importlib.import_module(f"{__name__}.{name}")
  raise ValueError(f"Unknown config {name!r}; valid choices: "
                   f"{', '.join(available())} (or a path to a .py file).")


def _base_overrides(name: str, module) -> dict:
  get_config = getattr(module, "get_config", None)
  overrides = get_config() if callable(get_config) else None
  if not isinstance(overrides, dict):
    raise ValueError(f"Config {name!r} must define get_config() returning a "
                     "dict of overrides.")
  return overrides


def load_overrides(name: str) -> dict:
  """Returns `get_config()` of the config `name`, merged with a row if named.

  Args:
    name: a config module name or .py path, optionally followed by
      "@<row_id>" or "@<row index>" of a table config.

  Raises:
    ValueError: no such config or row, or no `get_config()` returning a dict.
  """
  base, row = split_name(name)
  if row is None:
    return _base_overrides(name, load_module(name))
  chosen = select_row(load_rows(base), row, base)
  return {k: v for k, v in chosen.items() if k not in LAUNCH_KEYS}


def is_table(name: str) -> bool:
  """Whether config `name` defines `get_rows()`."""
  return callable(getattr(load_module(name), "get_rows", None))


def required_flags(name: str) -> tuple:
  """Flags the config `name` needs from the command line (`REQUIRED_FLAGS`)."""
  return tuple(getattr(load_module(split_name(name)[0]), "REQUIRED_FLAGS", ()))


def seeds(name: str) -> tuple:
  """The seeds the config `name` asks every row to run with (`SEEDS`), or ()."""
  return tuple(getattr(load_module(split_name(name)[0]), "SEEDS", ()))


def load_rows(name: str) -> list:
  """The rows of table config `name`: get_config() merged with each row.

  Every row gets a "row_id" (given, or made by `make_row_id`), unique within
  the table; an "entry" key is dropped.

  Raises:
    ValueError: not a table config, a row naming no config field, or
      repeated row ids.
  """
  module = load_module(name)
  get_rows = getattr(module, "get_rows", None)
  if not callable(get_rows):
    raise ValueError(f"Config {name!r} is not a table: it has no get_rows(). "
                     f"Run it with the entry point: python -m {ENTRY_POINT} "
                     f"--config={name}.")
  base = _base_overrides(name, module)
  rows = []
  for index, overrides in enumerate(get_rows()):
    if not isinstance(overrides, dict):
      raise ValueError(f"Row {index} of config {name!r} is not a dict: "
                       f"{overrides!r}.")
    row = core.merge_overrides(base, overrides)
    row.pop("entry", None)
    try:
      row["row_id"] = row.get("row_id") or make_row_id(row)
    except ValueError as e:
      raise ValueError(f"Row {index} of config {name!r}: {e}") from None
    rows.append(row)
  ids = [row["row_id"] for row in rows]
  repeated = sorted({i for i in ids if ids.count(i) > 1})
  if repeated:
    raise ValueError(f"Config {name!r} repeats row ids {repeated}: give those "
                     "rows a distinct 'row_id'.")
  return rows


def select_row(rows: list, key: str, name: str = "") -> dict:
  """The row whose row_id is `key`, or whose index is `key` (digits).

  Raises:
    ValueError: no such row (the message lists the row ids).
  """
  for row in rows:
    if row["row_id"] == key:
      return row
  if str(key).isdigit() and int(key) < len(rows):
    return rows[int(key)]
  raise ValueError(f"Config {name!r} has no row {key!r}; valid: indices "
                   f"0-{len(rows) - 1} or row ids "
                   f"{', '.join(row['row_id'] for row in rows)}.")


def _format_number(value) -> str:
  return f"{value:g}" if isinstance(value, float) else str(value)


def _short_name(dataset: str) -> str:
  """A folder dataset by its task name ("folder_photos"), not its whole path."""
  if dataset.startswith(core.names.FOLDER_PREFIX):
    return core.names.default_task_name(dataset)
  return dataset


def row_config(row: dict) -> core.RunConfig:
  """`RunConfig` with a row's settings ("row_id" and "entry" left out).

  Placeholders (`required`) stay as their text: nothing is checked here.

  Raises:
    ValueError: a key that is no config field.
  """
  return core.RunConfig().replace(
      **{k: v for k, v in row.items() if k not in LAUNCH_KEYS})


def row_kind(row: dict) -> str:
  """The kind of run of a row, read from its fields (`RunConfig.experiment`)."""
  return row_config(row).experiment


def make_row_id(row: dict) -> str:
  """A readable directory name for a row, from its `RunConfig` (`row_config`).

  "mobilenet_v2-cifar10-scale_bias+logits-lr0.045"; rows of K tasks name
  their tasks and the shared base's setting
  ("mobilenet_v2-mt-mnist5k_0-4+mnist5k_5-9-logits-frozen-lr0.045"),
  multi-resolution rows their sizes ("mobilenet_v2-imagenet2012-res96_128-...");
  a folder dataset appears as its task name ("folder_photos"); the input
  size, `add_missing_scales` ("gammas"), a `bn_stats` ("bn_frozen") or
  `bn_init` ("init_copy") other than the default, a TAPS patch's
  `taps_lambda` ("lambda1") and a LoRA patch's `lora_rank` ("rank4", and
  `lora_alpha` as "alpha8" when set) appear when set. A setting the row does not give
  is `RunConfig`'s default. Characters other than letters, digits and
  "_.+=-" become "_" (`k4p1.core.names.row_id`).

  Raises:
    ValueError: a key that is no config field.
  """
  config, default = row_config(row), core.RunConfig()
  parts = [config.model]
  if config.resolutions:
    parts.append(f"{config.dataset}-res"
                 + "_".join(str(s) for s in config.resolutions))
  elif config.tasks:
    tasks = tuple(_short_name(t) for t in config.tasks)
    # Long task lists would make unwieldy directory names: count them instead.
    parts.append("mt-" + ("+".join(tasks) if len(tasks) <= 3
                          else f"{len(tasks)}tasks"))
  elif config.dataset is not None:
    parts.append(_short_name(str(config.dataset)))
  if config.image_size is not None:
    parts.append(f"{config.image_size}px")
  parts.append(str(config.patch))
  if not run_kinds.policy(config.experiment).single_task:  # K tasks, one base.
    parts.append(config.shared)
  if config.add_missing_scales:
    parts.append("gammas")
  if config.bn_stats != default.bn_stats:
    parts.append(f"bn_{config.bn_stats}")
  if config.bn_init != default.bn_init:
    parts.append(f"init_{config.bn_init}")
  if "taps" in str(config.patch):
    parts.append(f"lambda{_format_number(config.taps_lambda)}")
  if "lora" in str(config.patch):
    parts.append(f"rank{config.lora_rank}")
    if config.lora_alpha is not None:
      parts.append(f"alpha{_format_number(config.lora_alpha)}")
  rate = config.learning_rate
  if rate is None:  # The patch's default, as the run resolves it.
    rate = core.defaults.learning_rate(str(config.patch))
  parts.append(f"lr{_format_number(rate)}")
  return core.names.row_id("-".join(parts))
