"""What each kind of run does, as data: one `RunPolicy` per kind.

`k4p1.train.resolve` names the kind once (`RunConfig.experiment`) and hands
its policy to the runner, the model builder, the outputs and the checks; the
report reads the policy of each recorded run. None of them compares kind
names: adding a kind of run means a `RunPolicy` here and its resolution in
`k4p1.train.plan`, nothing else.

```python
from k4p1.core import run_kinds
policy = run_kinds.policy("multires")
policy.shared_head      # True: one head serves every resolution
policy.table            # "resolutions": the report's multi-resolution table
```
"""

import dataclasses

# What a run writes (`k4p1.train.outputs`).
SAVES = ("patch", "backbone", "task_set")
# results.json's parameter counts: the whole trained model, one task's patch
# (`count_params`), or the K-task system next to K separate models.
PARAM_COUNTS = ("model", "patch", "system")
# The report's table for a run's tasks.
TABLES = ("transfer", "tasks", "resolutions")


@dataclasses.dataclass(frozen=True)
class RunPolicy:
  """What one kind of run builds, shares, freezes, writes and exports.

  Attributes:
    kind: the kind's name (results.json's "experiment").
    single_task: one dataset, one task: the base is built at the task's size,
      config.json records `task`/`image_size` (else `task_names`/
      `image_sizes`: K tasks share a base that takes any size).
    trains_backbone: the run trains a backbone of its own (base + new head,
      every weight trained) instead of patches of a base; its BN layers start
      as built, there is no base function to preserve.
    shared_head: one head serves every task; the patch holds no logits.
    param_counts: results.json's counts, one of `PARAM_COUNTS`.
    saves: the run's artefacts, one of `SAVES`.
    saves_backbone: a `task_set` run writes the base its patches fit (a run
      that extends an earlier one uses that run's).
    extends_earlier_run: the run adds tasks to a finished multi-task run in
      its workdir; the earlier tasks' outputs must not change.
    exports_savedmodel: writes one SavedModel serving every task (`export/`).
    tflite: `export_tflite` writes one file per task ("task"), one file for
      every task ("tasks"), or is refused (None).
    transfer_options: accepts the one-task speed options (`cache_features`,
      `mixed_precision`).
    table: the report's table for its tasks, one of `TABLES`.
    title: the heading of its tables in the report ("" for a kind without
      tables of its own: they are headed by the kind's name).
  """
  kind: str
  single_task: bool
  trains_backbone: bool
  shared_head: bool
  param_counts: str
  saves: str
  saves_backbone: bool
  extends_earlier_run: bool
  exports_savedmodel: bool
  tflite: str | None
  transfer_options: bool
  table: str
  title: str = ""

  @property
  def records_image_size(self) -> bool:
    """results.json's top-level image_size (multires tasks differ in it)."""
    return not self.shared_head


_TASK_SET = dict(single_task=False, trains_backbone=False, param_counts="system",
                 saves="task_set", transfer_options=False)

POLICIES = {
    "transfer": RunPolicy(
        "transfer", single_task=True, trains_backbone=False, shared_head=False,
        param_counts="patch", saves="patch", saves_backbone=False,
        extends_earlier_run=False, exports_savedmodel=False, tflite="task",
        transfer_options=True, table="transfer", title="Transfer learning"),
    "pretrain": RunPolicy(
        "pretrain", single_task=True, trains_backbone=True, shared_head=False,
        param_counts="model", saves="backbone", saves_backbone=True,
        extends_earlier_run=False, exports_savedmodel=False, tflite=None,
        transfer_options=False, table="tasks"),
    "multitask": RunPolicy(
        "multitask", shared_head=False, saves_backbone=True,
        extends_earlier_run=False, exports_savedmodel=True, tflite="tasks",
        table="tasks", title="Multi-task learning", **_TASK_SET),
    "multires": RunPolicy(
        "multires", shared_head=True, saves_backbone=True,
        extends_earlier_run=False, exports_savedmodel=False, tflite=None,
        table="resolutions", title="Multi-resolution", **_TASK_SET),
    "sequential": RunPolicy(
        "sequential", shared_head=False, saves_backbone=False,
        extends_earlier_run=True, exports_savedmodel=True, tflite="tasks",
        table="tasks", title="Sequential learning", **_TASK_SET),
}


def policy(kind: str) -> RunPolicy:
  """The policy of run kind `kind` (results.json's "experiment").

  Raises:
    ValueError: an unknown kind, naming the known ones.
  """
  try:
    return POLICIES[kind]
  except KeyError:
    raise ValueError(f"Unknown kind of run {kind!r}; known: "
                     f"{', '.join(POLICIES)}.") from None


def table(kind: str) -> str:
  """The report's table for a recorded run of kind `kind`.

  A kind this build does not know (a newer k4p1's results) gets the per-task
  table, headed by its name.
  """
  known = POLICIES.get(kind)
  return known.table if known else "tasks"


def title(kind: str) -> str:
  """The heading of a kind's tables ("" for a kind without one of its own)."""
  known = POLICIES.get(kind)
  return known.title if known else ""
