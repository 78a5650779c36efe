"""Configs: every one loads; tables' rows (the paper's settings), row ids, `name@row`."""

import re

import pytest

from experiments import configs
from k4p1 import core
from k4p1 import patches
from k4p1 import train

# Every table whose rows' checks need no prepared data (paper_taps' tfds:
# datasets are looked up in TFDS's data directory).
TABLES = ("paper_transfer_mobilenet_v2", "paper_transfer_inception_v3",
          "paper_lr_sweep", "paper_multitask", "paper_multires",
          "ssd_to_imagenet", "cpu_scale", "cpu_scale_32px_copy", "cpu_scale_taps")
PAPER_DATASETS = {"cifar10", "cifar100", "cars196", "fgvc_aircraft",
                  "oxford_flowers102", "places365_small"}


def config_for(row, workdir):
  """The runner config a row becomes (placeholders replaced as by a flag)."""
  values = {k: v for k, v in row.items() if k not in configs.LAUNCH_KEYS}
  for key, value in values.items():
    if configs.is_required_placeholder(value):
      values[key] = None  # What e.g. --weights=none gives.
  return train.RunConfig.from_dict({**values, "workdir": str(workdir)})


@pytest.mark.parametrize("name", configs.available())
def test_every_config_loads_and_every_row_is_a_config(name, tmp_path):
  """`get_config()` of every config, and `get_rows()` of every table, make configs."""
  base = config_for(configs.load_overrides(name), tmp_path)
  assert base.experiment in core.choices.EXPERIMENTS
  if not configs.is_table(name):
    return
  rows = configs.load_rows(name)
  assert rows
  ids = [row["row_id"] for row in rows]
  assert len(set(ids)) == len(ids)
  for row in rows:
    assert "entry" not in row
    assert re.fullmatch(r"[A-Za-z0-9_.+=-]+", row["row_id"]), row["row_id"]
    config = config_for(row, tmp_path)
    assert configs.row_kind(row) == config.experiment
    assert configs.load_overrides(f"{name}@{row['row_id']}") == {
        k: v for k, v in row.items() if k not in configs.LAUNCH_KEYS}


def test_every_table_is_listed_and_has_rows():
  assert set(TABLES) <= set(configs.available())
  for name in TABLES:
    assert configs.is_table(name)
    assert configs.load_rows(name)
  assert not configs.is_table("tiny_cpu")


@pytest.mark.parametrize("name", TABLES)
def test_every_row_passes_the_runs_checks(name, tmp_path):
  for row in configs.load_rows(name):
    train.check_config(config_for(row, tmp_path))  # Raises on any bad field.


def test_paper_transfer_tables_have_the_papers_grid():
  mobilenet = configs.load_rows("paper_transfer_mobilenet_v2")
  cells = {(r["dataset"], str(patches.PatchSpec.parse(r["patch"]))) for r in mobilenet}
  kinds = {"logits", "scale_bias+logits", "depthwise+logits",
           "scale_bias+depthwise+logits", "full"}
  assert cells == {(d, str(patches.PatchSpec.parse(k)))
                   for d in PAPER_DATASETS for k in kinds}
  assert len(mobilenet) == 30
  inception = configs.load_rows("paper_transfer_inception_v3")
  assert len(inception) == 18
  assert {r["dataset"] for r in inception} == PAPER_DATASETS
  # No depthwise layers in InceptionV3; its S/B patch is beta-only.
  assert not any("depthwise" in r["patch"] for r in inception)
  assert all(r["add_missing_scales"] is False for r in inception)
  for rows, size in ((mobilenet, 224), (inception, 299)):
    for row in rows:
      expected = 256 if row["dataset"] == "places365_small" else size
      assert row["image_size"] == expected
      assert row["learning_rate"] == 0.045 and row["weights"] == "imagenet"
      assert configs.row_kind(row) == "transfer"


def test_lr_sweep_brackets_the_papers_rate_for_three_patches():
  rows = configs.load_rows("paper_lr_sweep")
  by_patch = {}
  for row in rows:
    by_patch.setdefault((row["dataset"], row["patch"]), set()).add(row["learning_rate"])
  assert {p for _, p in by_patch} == {"logits", "scale_bias+logits", "full"}
  for lrs in by_patch.values():
    assert 0.045 in lrs
    assert sum(lr < 0.045 for lr in lrs) >= 2 and sum(lr > 0.045 for lr in lrs) >= 2


def test_multitask_and_multires_rows_are_read_as_their_kinds():
  multitask = configs.load_rows("paper_multitask")
  assert all(configs.row_kind(r) == "multitask" and len(r["tasks"]) >= 2
             for r in multitask)
  assert {r["shared"] for r in multitask} == {"frozen", "trained"}
  multires = configs.load_rows("paper_multires")
  for row in multires:
    config = train.resolve(config_for(row, "/tmp/unused")).config
    assert config.experiment == configs.row_kind(row) == "multires"
    assert len(config.resolutions) >= 3


def test_ssd_config_needs_weights_and_has_the_baselines(tmp_path):
  rows = configs.load_rows("ssd_to_imagenet")
  assert {r["patch"] for r in rows} >= {"logits", "scale_bias+logits", "full"}
  assert all(r["dataset"] == "imagenet2012" and r["image_size"] == 224 for r in rows)
  assert configs.required_flags("ssd_to_imagenet") == ("weights",)
  # Run without --weights, the placeholder stops the run at validation.
  config = train.RunConfig.from_dict(
      {**configs.load_overrides("ssd_to_imagenet"), "workdir": str(tmp_path)})
  with pytest.raises(ValueError, match="--weights=ssd_tf1:"):
    train.check_config(config)


def test_cpu_scale_covers_every_patch_the_sweep_and_a_multitask_run():
  rows = configs.load_rows("cpu_scale")
  transfer = [r for r in rows
              if configs.row_kind(r) == "transfer" and r["dataset"] == "mnist5k"]
  at_paper_lr = {str(patches.PatchSpec.parse(r["patch"])) for r in transfer
                 if r["learning_rate"] == 0.045}
  assert {str(patches.PatchSpec.parse(k)) for k in (
      "logits", "scale_bias+logits", "depthwise+logits",
      "scale_bias+depthwise+logits", "full")} <= at_paper_lr
  for spec in ("logits", "scale_bias+logits", "full"):
    assert len({r["learning_rate"] for r in transfer if r["patch"] == spec}) >= 4
  multitask = [r for r in rows if configs.row_kind(r) == "multitask"]
  assert multitask and all(2 <= len(r["tasks"]) <= 3 for r in multitask)
  # Each multi-task task also runs alone with the same patch: the baseline.
  for row in multitask:
    for task in row["tasks"]:
      assert any(configs.row_kind(r) == "transfer" and r["dataset"] == task
                 and r["patch"] == row["patch"] for r in rows)


def test_name_at_row_loads_the_merged_row_by_id_or_index():
  rows = configs.load_rows("cpu_scale")
  row = rows[2]
  by_id = configs.load_overrides(f"cpu_scale@{row['row_id']}")
  assert by_id == configs.load_overrides("cpu_scale@2")
  assert by_id == {k: v for k, v in row.items() if k not in configs.LAUNCH_KEYS}
  assert by_id["train_steps"] == configs.load_overrides("cpu_scale")["train_steps"]
  assert by_id["patch"] == row["patch"] != configs.load_overrides("cpu_scale").get("patch")
  with pytest.raises(ValueError, match="has no row 'nope'.*" + re.escape(rows[0]["row_id"])):
    configs.load_overrides("cpu_scale@nope")
  with pytest.raises(ValueError, match="not a table"):
    configs.load_rows("tiny_cpu")


def test_bad_rows_are_refused(tmp_path):
  path = tmp_path / "bad_table.py"
  path.write_text("def get_config():\n  return {}\n"
                  "def get_rows():\n  return [{'patch': 'logits'}, {'patch': 'logits'}]\n")
  with pytest.raises(ValueError, match="repeats row ids"):
    configs.load_rows(str(path))
  path.write_text("def get_config():\n  return {}\n"
                  "def get_rows():\n  return [{'patch': 'logits', 'lr': 0.1}]\n")
  with pytest.raises(ValueError, match="Row 0 of config .*Unknown config field.*'lr'"):
    configs.load_rows(str(path))


def test_old_rows_naming_their_entry_point_load_as_before(tmp_path):
  """"entry" (older configs) is ignored: the fields give the kind and the id."""
  path = tmp_path / "old_table.py"
  path.write_text(
      "def get_config():\n  return {'dataset': 'mnist5k'}\n"
      "def get_rows():\n  return [{'entry': 'transfer', 'patch': 'logits'},\n"
      "    {'entry': 'multitask', 'tasks': ('mnist5k:0-4', 'mnist5k:5-9')}]\n")
  rows = configs.load_rows(str(path))
  assert [r["row_id"] for r in rows] == [
      "mobilenet_v2-mnist5k-logits-lr0.045",
      "mobilenet_v2-mt-mnist5k_0-4+mnist5k_5-9-scale_bias+logits-frozen-lr0.045"]
  assert [configs.row_kind(r) for r in rows] == ["transfer", "multitask"]
  assert "entry" not in configs.load_overrides(f"{path}@1")


def test_row_ids_take_every_unset_setting_from_the_run_configs_defaults():
  default = core.RunConfig()
  assert configs.make_row_id({"dataset": "cifar10"}) == (
      f"{default.model}-cifar10-{default.patch}-lr0.045")
  assert configs.make_row_id({"dataset": "cifar10", "bn_init": "copy",
                              "patch": "taps+logits"}) == (
      "mobilenet_v2-cifar10-taps+logits-init_copy-"
      f"lambda{default.taps_lambda:g}-lr0.045")
  # LoRA behind frozen BN: the rate the run resolves (defaults.learning_rate).
  assert configs.make_row_id({"dataset": "cifar10", "patch": "lora+logits"}) == (
      f"mobilenet_v2-cifar10-lora+logits-rank{default.lora_rank}-lr0.0142")
  assert configs.make_row_id({"dataset": "cifar10", "patch": "lora+logits",
                              "lora_rank": 16, "lora_alpha": 8.0}) == (
      "mobilenet_v2-cifar10-lora+logits-rank16-alpha8-lr0.0142")
  # No dataset: no dataset part (there is no default dataset).
  assert configs.make_row_id({"patch": "logits"}) == "mobilenet_v2-logits-lr0.045"
