"""`MultitaskConfig`: settings of multi-task, sequential and multi-resolution runs.

It extends `TransferConfig` (every training setting — model, weights, patch,
optimizer, schedule, loop, strategy — means the same) with the task list and
the multi-task options. Three experiments share it:

* `multitask`: K datasets (`tasks`), one patch and one head per task on one
  shared base; `shared="trained"` also trains the base on every task.
* `sequential` (`sequential=True`): adds the tasks in `tasks` to the finished
  run in `workdir`, training only their patches; earlier tasks are untouched.
* `multires` (`resolutions` set): one dataset (`dataset`) at several input
  sizes, one patch per size (tasks `<dataset>@<size>`) and one head shared by
  every size.
"""

import dataclasses
import re
from typing import Optional

from k4p1.train import config as config_lib

SHARED = ("frozen", "trained")
TASK_SAMPLING = ("all", "round_robin", "proportional")
EXPERIMENTS = ("multitask", "sequential", "multires")
_TASK_NAME = re.compile(r"^[A-Za-z0-9_.@:\-]+$")  # What apply_patch accepts.
# A rerun of the same workdir must agree on these (the others may change).
IDENTITY_FIELDS = config_lib.IDENTITY_FIELDS + (
    "tasks", "task_names", "image_sizes", "resolutions", "shared",
    "task_sampling", "sequential")


# TensorFlow name scopes reject '@' and ':' inside `tf.function` (Keras opens
# one per layer and model), although `apply_patch` accepts them in task names.
_UNSAFE_IN_SCOPES = re.compile(r"[^A-Za-z0-9_.\-]")


def model_task_name(name: str) -> str:
  """The task name given to `apply_patch` (layer suffix, patch file): "d@48" -> "d_48"."""
  return _UNSAFE_IN_SCOPES.sub("_", name)


@dataclasses.dataclass(frozen=True)
class TaskPlan:
  """One task of a run: its name, dataset and input size.

  `name` keys results.json and TensorBoard tags (e.g. "mnist5k_5-9@64");
  `model_name` names the task's layers, model and patch file.
  """
  name: str
  dataset: str
  image_size: int

  @property
  def model_name(self) -> str:
    return model_task_name(self.name)


@dataclasses.dataclass
class MultitaskConfig(config_lib.TransferConfig):
  """Settings of a multi-task, sequential or multi-resolution run.

  Inherited fields keep their `TransferConfig` meaning, with these changes:
  `dataset` is the multi-resolution dataset (unused otherwise: None once
  resolved); `task` is unused; `batch_size` is the global batch of *each*
  task; `image_size` is every task's input size unless `image_sizes` is given.

  Attributes:
    tasks: datasets of the tasks (multitask), or of the tasks to add
      (sequential), e.g. ("mnist5k:5-6", "mnist5k:7-9").
    task_names: one name per task; default: from the datasets.
    image_sizes: one input size per task; default: `image_size` for all, or
      each dataset's default size.
    resolutions: multires: the input sizes, one patch per size.
    shared: "frozen" (only patches learn) or "trained" (the shared base also
      learns from every task).
    task_sampling: "all" (every step takes one batch of every task and sums
      the losses), "round_robin" or "proportional" (every step trains one
      task, chosen by a stateless function of the step and the seed).
    sequential: add `tasks` to the finished run in `workdir`.
    export_image_size: input size of the exported serving model; default:
      the largest task size.
  """
  dataset: Optional[str] = None
  tasks: tuple = ()
  task_names: Optional[tuple] = None
  image_sizes: Optional[tuple] = None
  resolutions: tuple = ()
  shared: str = "frozen"
  task_sampling: str = "all"
  sequential: bool = False
  export_image_size: Optional[int] = None

  @property
  def experiment(self) -> str:
    if self.resolutions:
      return "multires"
    return "sequential" if self.sequential else "multitask"

  def to_dict(self) -> dict:
    """The fields as JSON would give them back (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(self).items()}

  def validate(self) -> None:
    """Checks every field before anything is built.

    Raises:
      ValueError: naming the bad field, its value and the valid choices.
    """
    from k4p1 import data  # pylint: disable=g-import-not-at-top
    from k4p1 import patches  # pylint: disable=g-import-not-at-top
    for field, off in (("cache_features", False), ("mixed_precision", "none")):
      # TransferConfig options the multi-task runner does not implement (yet).
      if getattr(self, field, off) != off:
        raise ValueError(f"{field}={getattr(self, field)!r} is not supported by "
                         f"multi-task runs; use {off!r}.")
    config_lib._check_choice("shared", self.shared, SHARED)  # pylint: disable=protected-access
    config_lib._check_choice("task_sampling", self.task_sampling, TASK_SAMPLING)  # pylint: disable=protected-access
    tasks, resolutions = tuple(self.tasks or ()), tuple(self.resolutions or ())
    if resolutions:
      if self.sequential:
        raise ValueError("resolutions (multires) and sequential exclude each other.")
      if tasks:
        raise ValueError(f"Multires trains one dataset (dataset=...) at several "
                         f"sizes; do not also pass tasks={list(tasks)}.")
      if not self.dataset:
        raise ValueError("Multires needs dataset=<name> (the dataset trained at "
                         f"resolutions {list(resolutions)}).")
      if len(set(resolutions)) != len(resolutions):
        raise ValueError(f"resolutions {list(resolutions)} repeat a size.")
      if self.image_sizes or self.image_size is not None:
        raise ValueError("Multires takes its sizes from resolutions; do not "
                         "also pass image_size or image_sizes.")
      spec = patches.PatchSpec.parse(self.patch)
      if spec.is_full or not spec.kinds - {"logits"}:
        raise ValueError(f"Multires needs a patch with per-resolution kinds "
                         f"(e.g. scale_bias), not {str(spec)!r}: the head is "
                         "shared by every resolution.")
    else:
      if not tasks:
        raise ValueError("tasks is empty: name the datasets of the tasks, e.g. "
                         "tasks=('mnist5k:5-6', 'mnist5k:7-9').")
      for dataset in tasks:
        data.get_dataset_info(dataset)  # Raises with the valid choices.
    count = len(resolutions or tasks)
    for field in ("task_names", "image_sizes"):
      value = getattr(self, field)
      if value is not None and len(value) != count:
        raise ValueError(f"{field} has {len(value)} entries for {count} tasks: "
                         f"{list(value)}.")
    if self.sequential and self.shared != "frozen":
      raise ValueError("A sequential run trains only the new tasks' patches: "
                       f"shared must be 'frozen', not {self.shared!r}.")
    # Every training setting is checked by TransferConfig on one task's view.
    view = self.replace(dataset=(self.dataset if resolutions else tasks[0]),
                        task=None, image_size=None)
    config_lib.TransferConfig.validate(view)
    from k4p1 import models  # pylint: disable=g-import-not-at-top
    minimum = models.get_architecture(self.model).min_image_size
    for field in ("image_size", "export_image_size"):
      if getattr(self, field) is not None:
        config_lib._check_int(field, getattr(self, field), minimum)  # pylint: disable=protected-access
    for size in tuple(self.image_sizes or ()) + resolutions:
      config_lib._check_int("image size", size, minimum)  # pylint: disable=protected-access
    names = [p.name for p in self._plans()]
    bad = [n for n in names if not _TASK_NAME.match(n)]
    if bad:
      raise ValueError(f"Invalid task names {bad}: use letters, digits and '_.@:-'.")
    if len({model_task_name(n) for n in names}) != len(names):
      raise ValueError(f"Task names {names} repeat a name (with '@' and ':' "
                       "read as '_'): pass task_names=.")

  def resolved(self) -> "MultitaskConfig":
    """Validates, then fills task names, sizes and the defaults of training fields.

    Training fields (epsilon, training length, ...) are resolved by
    `TransferConfig.resolved` on this config, with the per-task fields then
    set back: one place decides those defaults for every runner.

    Raises:
      ValueError: see `validate`.
    """
    self.validate()
    plans = self._plans()
    view = self.replace(dataset=self.dataset if self.resolutions else self.tasks[0],
                        task=None)
    config = config_lib.TransferConfig.resolved(view)  # Validates again: cheap.
    config = config.replace(
        tasks=tuple(self.tasks or ()), resolutions=tuple(self.resolutions or ()),
        task_names=tuple(p.name for p in plans),
        image_sizes=tuple(p.image_size for p in plans), image_size=self.image_size,
        dataset=self.dataset if self.resolutions else None, task=None)
    if config.export_image_size is None:
      config = config.replace(export_image_size=max(config.image_sizes))
    return config

  def task_plans(self) -> list:
    """The run's tasks as `TaskPlan`s (name, dataset, input size), in task-id order."""
    return self._plans()

  def _plans(self) -> list:
    from k4p1 import data  # pylint: disable=g-import-not-at-top
    if self.resolutions:
      stem = config_lib.default_task_name(self.dataset)
      return [TaskPlan(f"{stem}@{size}", self.dataset, int(size))
              for size in self.resolutions]
    plans = []
    for index, dataset in enumerate(self.tasks):
      name = (self.task_names[index] if self.task_names
              else config_lib.default_task_name(dataset))
      if self.image_sizes:
        size = int(self.image_sizes[index])
      elif self.image_size is not None:
        size = self.image_size
      else:
        size = data.default_image_size(dataset, self.model)
      plans.append(TaskPlan(name, dataset, size))
    return plans
