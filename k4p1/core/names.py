"""Names: of tasks (in models, files and results), of datasets, of table rows.

Three character rules, one base. TensorFlow name scopes inside `tf.function`
(Keras opens one per layer and model) accept letters, digits and "_.-", and a
scope cannot start with "_.-": a task's name in a model (layer suffix, patch
file) follows that (`MODEL_TASK_NAME`). A task's name in results.json may
also hold "@" (multires: "cifar10@96") and ":" (label subsets), both read as
"_" in the model (`model_task_name`): `TASK_NAME`. A table row's id, a
directory name made from its settings, may also hold "+" (patch specs) and
"=" (`row_id`).
"""

import os
import re

# Prefixes of dataset names that are not registry names.
FOLDER_PREFIX = "folder:"  # folder:DIR, images in one folder per class.
TFDS_PREFIX = "tfds:"  # tfds:NAME[/CONFIG][:labels], any TFDS dataset.

_SCOPE_CHARS = r"A-Za-z0-9_.\-"
MODEL_TASK_NAME = re.compile(rf"^[A-Za-z0-9][{_SCOPE_CHARS}]*$")
TASK_NAME = re.compile(rf"^[A-Za-z0-9][{_SCOPE_CHARS}@:]*$")
_NOT_IN_SCOPES = re.compile(rf"[^{_SCOPE_CHARS}]")
_NOT_IN_ROW_IDS = re.compile(rf"[^{_SCOPE_CHARS}+=]+")
# A path with a scheme ("gs://", "ram://") is a URL, not a local path.
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(path) -> bool:
  """Whether `path` has a scheme (`gs://...`, `ram://...`): not a local path."""
  return bool(_URL.match(os.fspath(path)))


def model_task_name(name: str) -> str:
  """The name given to `apply_patch` (layer suffix, patch file): "d@48" -> "d_48"."""
  return _NOT_IN_SCOPES.sub("_", name)


def check_task_names(names) -> None:
  """Task names must be valid and distinct once read as model names.

  Raises:
    ValueError: a name breaks `TASK_NAME`, or two read as the same model name.
  """
  bad = [n for n in names if not TASK_NAME.match(n)]
  if bad:
    raise ValueError(f"Invalid task names {bad}: start with a letter or digit, "
                     "then use letters, digits and '_.@:-'.")
  if len({model_task_name(n) for n in names}) != len(names):
    raise ValueError(f"Task names {names} repeat a name (with '@' and ':' read "
                     "as '_'): pass task_names=.")


def _folder_name(directory: str) -> str:
  """The last component of a folder dataset's directory (path or URL)."""
  if is_url(directory):
    return os.path.basename(directory.rstrip("/"))
  return os.path.basename(os.path.abspath(os.path.expanduser(directory)))


def default_task_name(dataset: str) -> str:
  """A task name safe in layer and file names: "mnist5k:5-9" -> "mnist5k_5-9".

  "folder:/data/my photos" -> "folder_my_photos" (the folder's name, other
  characters as '_'); "tfds:eurosat/rgb:0-4" -> "tfds_eurosat_rgb_0-4".

  Raises:
    ValueError: the name breaks `MODEL_TASK_NAME`.
  """
  if dataset.startswith(FOLDER_PREFIX):
    return "folder_" + model_task_name(
        _folder_name(dataset[len(FOLDER_PREFIX):]))
  name = dataset.replace(":", "_").replace(",", "_")
  if dataset.startswith(TFDS_PREFIX):
    name = name.replace("/", "_")
  if not MODEL_TASK_NAME.match(name):
    raise ValueError(f"Task name {name!r} (from {dataset!r}) must start with a "
                     "letter or digit and use only letters, digits and '_.-'.")
  return name


def row_id(text: str) -> str:
  """`text` as a row id: each run of other characters than "A-Za-z0-9_.+=-" is "_"."""
  return _NOT_IN_ROW_IDS.sub("_", text)
