"""`resolve`: a `RunConfig` checked once and turned into the objects a run uses.

```python
plan = train.resolve(train.RunConfig(workdir="runs/a", dataset="cifar100"))
plan.spec            # patches.PatchSpec, parsed once
plan.tasks[0].dataset  # data.DatasetInfo, looked up once
plan.config          # the canonical config: every default made explicit
```
Every check runs here, before anything is built, and raises `ValueError`
naming the bad field, its value and the valid choices (a sequential run's
missing or mismatched earlier run: `workdir.WorkdirMismatchError`). The
runner, the data pipeline and the patch injection take the resolved objects
and never parse a name again.
"""

import dataclasses
import os
from typing import Optional

from absl import logging

from k4p1 import data
from k4p1 import models
from k4p1 import patches
from k4p1 import paths
from k4p1 import workdir as workdir_lib
from k4p1.core import defaults
from k4p1.core import run_kinds
from k4p1.train import checks
from k4p1.train import config as config_lib
from k4p1.train import inputs as inputs_lib
from k4p1.train import performance

model_task_name = checks.model_task_name
default_task_name = checks.default_task_name
# Settings that change how a dataset name reads (a sequential run inherits
# them from the first run of its workdir).
_DATA_FIELDS = ("eval_fraction", "image_key", "label_key",
                "validation_fraction")


@dataclasses.dataclass(frozen=True)
class TaskPlan:
  """One task of a run.

  Attributes:
    name: key of results.json and TensorBoard tags (e.g. "mnist5k_5-9@64").
    dataset: the task's dataset, resolved.
    image_size: its input size.
    trained: whether this run trains it (sequential: only the new tasks).
    patch_file: an earlier task's patch (sequential runs), else None.
    input: how the run reads its data (every pipeline of the task); set by
      `resolve`.
  """
  name: str
  dataset: data.DatasetInfo
  image_size: int
  trained: bool = True
  patch_file: Optional[str] = None
  input: Optional[inputs_lib.TaskInput] = None

  @property
  def model_name(self) -> str:
    """Names the task's layers, model and patch file."""
    return model_task_name(self.name)

  @property
  def num_classes(self) -> int:
    return self.dataset.num_classes


@dataclasses.dataclass(frozen=True)
class RunPlan:
  """A resolved run: canonical config, parsed patch, tasks, output directory.

  Attributes:
    config: the config with every default made explicit (config.json's).
    spec: the patch each task gets (multires: without logits, the head is
      shared).
    architecture: the backbone's `models.Architecture`.
    tasks: every task in task-id order (sequential: earlier ones first).
    run_dir: where this run's own files go (the workdir, or a sequential
      run's `<workdir>/sequential/<tasks>`).
    manifest: sequential runs: the earlier run's tasks.json.
  """
  config: config_lib.RunConfig
  spec: patches.PatchSpec
  architecture: models.Architecture
  tasks: tuple
  run_dir: str
  manifest: Optional[dict] = None

  @property
  def experiment(self) -> str:
    """The kind of run's name (results.json's "experiment")."""
    return self.config.experiment

  @property
  def policy(self) -> run_kinds.RunPolicy:
    """What this kind of run builds, shares, writes and exports."""
    return run_kinds.policy(self.config.experiment)

  @property
  def trained_tasks(self) -> list:
    return [t for t in self.tasks if t.trained]

  @property
  def bn_init(self) -> str:
    """How the BN layers the run trains start (`k4p1.train.bn_init`).

    The config's choice; a run that trains a backbone of its own (pretrain)
    has no base function to preserve: its layers start as built ("copy").
    """
    return "copy" if self.policy.trains_backbone else self.config.bn_init


def train_examples(info: data.DatasetInfo) -> int:
  """Training examples of `info` (estimated for an unsized label subset)."""
  if info.num_train_examples:
    return info.num_train_examples
  if not info.base_num_train_examples:
    raise ValueError(f"The size of {info.name!r} is unknown: set train_steps "
                     "instead of train_epochs.")
  estimate = max(1, info.base_num_train_examples * info.num_classes //
                 info.base_num_classes)
  logging.warning("%s has no registered size; assuming %d training examples "
                  "for the epoch-based schedule.", info.name, estimate)
  return estimate


def dataset_info(config: config_lib.RunConfig, name: str) -> data.DatasetInfo:
  """Resolves dataset `name` with the config's data settings.

  `eval_fraction` goes to folder datasets, `image_key` and `label_key` to
  `tfds:` ones (the others reject them); `validation_fraction` to every
  dataset (its train split then excludes the validation split);
  `skip_bad_images` to folder datasets.
  """
  folder = name.startswith(data.FOLDER_PREFIX)
  tfds_name = name.startswith(data.TFDS_PREFIX)
  return data.get_dataset_info(
      name, data_dir=config.data_dir,
      eval_fraction=config.eval_fraction if folder else None,
      image_key=config.image_key if tfds_name else None,
      label_key=config.label_key if tfds_name else None,
      validation_fraction=config.validation_fraction,
      skip_bad_images=config.skip_bad_images and folder)


def _check_data_fields(config, tasks) -> None:
  """eval_fraction, image_key, label_key, skip_bad_images apply to some task."""
  infos = [t.dataset for t in tasks]
  checks.check_data_dir(config.data_dir, infos)
  if (config.eval_fraction is not None and
      all(info.eval_fraction is None for info in infos)):
    raise ValueError(
        f"eval_fraction={config.eval_fraction!r} applies to folder:DIR "
        "datasets without train/ and test/ folders; no task is one: "
        f"{[info.name for info in infos]}.")
  if config.skip_bad_images:
    if not any(info.skip_bad_images for info in infos):
      raise ValueError("skip_bad_images applies to folder:DIR datasets (TFDS "
                       "datasets decode their own prepared records); no task "
                       f"is one: {[info.name for info in infos]}.")
    logging.warning("skip_bad_images: image files of folder datasets that fail "
                    "to decode are skipped, each named on stderr; epoch and "
                    "dataset sizes still count them.")
  for field in ("image_key", "label_key"):
    if getattr(config, field) is not None and not any(
        info.name.startswith(data.TFDS_PREFIX) for info in infos):
      raise ValueError(f"{field}={getattr(config, field)!r} applies to "
                       "tfds:NAME datasets; no task is one: "
                       f"{[info.name for info in infos]}.")


def _inherit_data_fields(config) -> config_lib.RunConfig:
  """A sequential run reads the earlier tasks as the first run did."""
  path = workdir_lib.config_path(config.workdir)
  if not paths.exists(path):
    return config
  first = workdir_lib.read_json(path).get("config", {})
  return config.replace(**{
      field: first.get(field) for field in _DATA_FIELDS
      if getattr(config, field) is None and first.get(field) is not None})


def resolve(config: config_lib.RunConfig) -> RunPlan:
  """Validates `config` once and resolves it into a `RunPlan`.

  Raises:
    ValueError: a bad field (naming its value and the valid choices).
    workdir.WorkdirMismatchError: a sequential run without a finished run in
      its workdir, or with a task name that run already has.
  """
  spec = checks.check_fields(config)
  checks.check_experiment(config, spec)
  arch = models.get_architecture(config.model)
  config = config.replace(weights=models.normalize_weights(config.weights),
                          patch=str(spec))
  manifest = None
  if config.sequential:
    manifest = workdir_lib.read_manifest_for_sequential(config.workdir)
    config = config.replace(
        model=manifest["model"], alpha=manifest["alpha"],
        add_missing_scales=manifest["add_missing_scales"],
        weights=paths.absolute(os.path.join(config.workdir,
                                            manifest["backbone"])),
        export_image_size=manifest["export_image_size"])
    config = _inherit_data_fields(config)
    arch = models.get_architecture(config.model)
  tasks = _new_tasks(config, arch)
  if manifest is not None:
    tasks = _earlier_tasks(config, manifest, tasks) + tasks
  checks.check_task_names([t.name for t in tasks])
  _check_data_fields(config, tasks)
  config = _fill_defaults(config, tasks)
  tasks = [dataclasses.replace(t, input=_task_input(config, arch, t))
           for t in tasks]
  run_dir = config.workdir
  if config.sequential:
    run_dir = workdir_lib.sequential_run_dir(
        config.workdir, [t.name for t in tasks if t.trained])
  if run_kinds.policy(config.experiment).shared_head:
    spec = patches.PatchSpec(spec.kinds - {"logits"})
  return RunPlan(config, spec, arch, tuple(tasks), run_dir, manifest)


def _task_input(config, arch, task: TaskPlan) -> inputs_lib.TaskInput:
  return inputs_lib.TaskInput(
      task.dataset, task.image_size, arch, batch_size=config.batch_size,
      data_dir=config.data_dir, seed=config.seed,
      prefetch_to_device=config.prefetch_to_device,
      input_pipeline=config.input_pipeline)


def _new_tasks(config, arch) -> list:
  """The tasks this run trains, with their datasets and sizes."""
  if config.dataset and not config.resolutions:
    info = dataset_info(config, config.dataset)
    size = config.image_size or data.default_image_size(info, arch.name)
    return [TaskPlan(config.task or default_task_name(config.dataset), info, size)]
  if config.resolutions:
    info = dataset_info(config, config.dataset)
    stem = default_task_name(config.dataset)
    return [TaskPlan(f"{stem}@{size}", info, int(size))
            for size in config.resolutions]
  plans = []
  for index, dataset in enumerate(config.tasks):
    info = dataset_info(config, dataset)
    name = (config.task_names[index] if config.task_names
            else default_task_name(dataset))
    if config.image_sizes:
      size = int(config.image_sizes[index])
    else:
      size = config.image_size or data.default_image_size(info, arch.name)
    plans.append(TaskPlan(name, info, size))
  return plans


def _earlier_tasks(config, manifest, new_tasks) -> list:
  """A sequential run's earlier tasks, read from the manifest (not trained)."""
  earlier = manifest["tasks"]
  clash = sorted({t.model_name for t in new_tasks} &
                 {model_task_name(e["name"]) for e in earlier})
  if clash:
    raise workdir_lib.WorkdirMismatchError(
        f"Workdir {config.workdir!r} already has tasks {clash}: pass other "
        "task_names (--task_names).")
  return [TaskPlan(e["name"], dataset_info(config, e["dataset"]),
                   int(e["image_size"]), trained=False,
                   patch_file=os.path.join(config.workdir, e["patch_file"]))
          for e in earlier]


def _fill_defaults(config, tasks) -> config_lib.RunConfig:
  """Makes every default explicit, so that config.json says what ran."""
  new = [t for t in tasks if t.trained]
  if run_kinds.policy(config.experiment).single_task:
    config = config.replace(task=new[0].name, image_size=new[0].image_size)
  else:
    config = config.replace(task_names=tuple(t.name for t in new),
                            image_sizes=tuple(t.image_size for t in new))
    if config.export_image_size is None:
      config = config.replace(export_image_size=max(t.image_size for t in tasks))
  if config.epsilon is None:
    config = config.replace(epsilon=1.0 if config.optimizer == "rmsprop" else 1e-7)
  if config.learning_rate is None:
    config = config.replace(learning_rate=defaults.learning_rate(config.patch))
  fractions = [t.dataset.eval_fraction for t in tasks
               if t.dataset.eval_fraction is not None]
  if config.eval_fraction is None and fractions:
    config = config.replace(eval_fraction=fractions[0])
  if config.train_steps is None and config.train_epochs is None:
    config = config.replace(train_epochs=config_lib.DEFAULT_TRAIN_EPOCHS)
  return config.replace(
      jit_compile=performance.resolve_jit_compile(config.jit_compile))


def check_config(config: config_lib.RunConfig) -> None:
  """Checks `config` as `resolve` does, without reading any workdir.

  For entry points and configs tests that validate before a run exists.
  """
  checks.check_experiment(config, checks.check_fields(config))
  arch = models.get_architecture(config.model)
  tasks = _new_tasks(config, arch)
  checks.check_task_names([t.name for t in tasks])
  _check_data_fields(config, tasks)
