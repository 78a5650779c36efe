"""The launcher's mechanics, with a stand-in interpreter instead of TensorFlow runs.

`--python` points at a small script that records its arguments and writes
results.json into `--workdir` (or fails for a chosen row), so the tests check
commands, pass-through flags, skipping, `--row`, logs and exit codes in
seconds. tests/test_launch_e2e.py runs real rows.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from experiments import configs
from experiments import launch

FAKE_ENTRY = textwrap.dedent("""\
    #!{python}
    import json, os, sys
    args = sys.argv[1:]
    workdir = [a.split("=", 1)[1] for a in args if a.startswith("--workdir=")][0]
    print("fake row", " ".join(args))
    fail = os.environ.get("FAKE_FAIL")
    if fail and fail in workdir:
      sys.exit(3)
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump({{"argv": args}}, f)
    """)
TABLE = textwrap.dedent("""\
    def get_config():
      return {"model": "mobilenet_v2", "dataset": "mnist5k", "train_steps": 5}
    def get_rows():
      return [{"patch": "logits"}, {"patch": "full", "learning_rate": 0.01},
              {"entry": "multitask", "tasks": ("mnist5k:0-4", "mnist5k:5-9"),
               "patch": "scale_bias+logits"}]
    """)


@pytest.fixture
def fake_python(tmp_path):
  path = tmp_path / "fake_python"
  path.write_text(FAKE_ENTRY.format(python=sys.executable))
  path.chmod(0o755)
  return str(path)


@pytest.fixture
def table(tmp_path):
  path = tmp_path / "table.py"
  path.write_text(TABLE)
  return str(path)


def run_launcher(*args, env=None):
  return subprocess.run(
      [sys.executable, "-m", "experiments.launch", *args], capture_output=True,
      text=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
      env={**os.environ, **(env or {})}, check=False)


def test_runs_every_row_passes_flags_through_and_skips_finished_rows(
    tmp_path, table, fake_python):
  results = tmp_path / "runs"
  proc = run_launcher(f"--config={table}", f"--results_dir={results}",
                      f"--python={fake_python}", "--train_steps=2",
                      "--data_dir=/data", env={"FAKE_FAIL": "full"})
  assert proc.returncode == 1, proc.stderr  # The `full` row failed...
  assert "2 run, 0 already done, 1 failed" in proc.stdout
  rows = configs.load_rows(table)
  done = [r for r in rows if (results / r["row_id"] / "results.json").exists()]
  assert [r["patch"] for r in done] == ["logits", "scale_bias+logits"]  # ...not the others.
  for row in done:
    argv = json.loads((results / row["row_id"] / "results.json").read_text())["argv"]
    assert argv == ["-m", "experiments.run",
                    f"--config={table}@{row['row_id']}",
                    f"--workdir={results / row['row_id']}",
                    "--train_steps=2", "--data_dir=/data"]
    record = json.loads((results / "logs" / f"{row['row_id']}.json").read_text())
    assert record["returncode"] == 0 and record["wall_s"] >= 0
    assert "fake row" in (results / "logs" / f"{row['row_id']}.log").read_text()
  failed = rows[1]["row_id"]
  assert json.loads((results / "logs" / f"{failed}.json").read_text())["returncode"] == 3

  # A rerun only runs what is missing.
  proc = run_launcher(f"--config={table}", f"--results_dir={results}",
                      f"--python={fake_python}")
  assert proc.returncode == 0, proc.stderr
  assert "1 run, 2 already done, 0 failed" in proc.stdout
  assert (results / failed / "results.json").exists()


def test_row_list_and_dry_run(tmp_path, table, fake_python):
  rows = configs.load_rows(table)
  results = tmp_path / "runs"
  proc = run_launcher(f"--config={table}", f"--results_dir={results}", "--row=1",
                      f"--python={fake_python}")
  assert proc.returncode == 0, proc.stderr
  assert os.listdir(results / "logs") and (results / rows[1]["row_id"]).is_dir()
  assert not (results / rows[0]["row_id"]).exists()

  listing = run_launcher(f"--config={table}", f"--results_dir={results}", "--list")
  lines = listing.stdout.splitlines()
  assert len(lines) == 3
  assert lines[1].split() == ["1", rows[1]["row_id"], "[transfer]", "done"]
  assert lines[2].split() == ["2", rows[2]["row_id"], "[multitask]", "pending"]

  dry = run_launcher(f"--config={table}", f"--results_dir={results}", "--dry_run",
                     f"--row={rows[2]['row_id']}")
  assert dry.returncode == 0
  assert "-m experiments.run" in dry.stdout and f"@{rows[2]['row_id']}" in dry.stdout
  assert not (results / rows[2]["row_id"]).exists()


@pytest.mark.slow
def test_seeds_run_every_row_once_per_seed(tmp_path, table, fake_python):
  rows = configs.load_rows(table)
  results = tmp_path / "runs"
  proc = run_launcher(f"--config={table}", f"--results_dir={results}", "--row=0",
                      "--seeds=0,2", f"--python={fake_python}")
  assert proc.returncode == 0, proc.stderr
  row_id = rows[0]["row_id"]
  for seed in (0, 2):
    run_dir = results / f"{row_id}-seed{seed}"
    argv = json.loads((run_dir / "results.json").read_text())["argv"]
    assert argv[2:5] == [f"--config={table}@{row_id}", f"--workdir={run_dir}",
                         f"--seed={seed}"]
    record = json.loads((results / "logs" / f"{row_id}-seed{seed}.json").read_text())
    assert record["seed"] == seed
  assert sorted(os.listdir(results)) == sorted(
      ["logs", f"{row_id}-seed0", f"{row_id}-seed2"])
  listing = run_launcher(f"--config={table}", f"--results_dir={results}",
                         "--seeds=0,1,2", "--list").stdout.splitlines()
  assert [line.split()[1:] for line in listing[:3]] == [
      [f"{row_id}-seed0", "[transfer]", "done"],
      [f"{row_id}-seed1", "[transfer]", "pending"],
      [f"{row_id}-seed2", "[transfer]", "done"]]
  # A config's SEEDS is the default.
  with_seeds = tmp_path / "seeded.py"
  with_seeds.write_text(TABLE + "SEEDS = (3, 4)\n")
  listing = run_launcher(f"--config={with_seeds}", "--list").stdout.splitlines()
  assert len(listing) == 6 and listing[1].split()[1].endswith("-seed4")


@pytest.mark.slow
def test_bad_invocations_fail_with_one_line(tmp_path, table):
  results = f"--results_dir={tmp_path}"
  cases = [
      (["--config=no_such_table", results], "Unknown config 'no_such_table'"),
      (["--config=tiny_cpu", results], "not a table"),
      ([f"--config={table}", results, "--row=7"], "has no row '7'"),
      ([f"--config={table}", results, "--workdir=/x"], "--workdir is set by the launcher"),
      (["--config=cpu_scale", results], "needs --weights"),
      ([f"--config={table}"], "--results_dir is required"),
      ([f"--config={table}", results, "--seeds=0,x"], "--seeds must be integers"),
      ([f"--config={table}", results, "--seeds=1,1"], "repeats a seed"),
      ([f"--config={table}", results, "--seeds=0,1", "--seed=3"],
       "--seeds or --seed, not both"),
  ]
  for args, message in cases:
    proc = run_launcher(*args)
    assert proc.returncode == 1 and message in proc.stderr, (args, proc.stderr)
  assert os.listdir(tmp_path) == ["table.py"]  # Nothing was created.


def test_required_placeholders_are_satisfied_by_a_flag():
  rows = configs.load_rows("ssd_to_imagenet")
  with pytest.raises(ValueError, match="needs --weights"):
    launch.check_required("ssd_to_imagenet", rows, ["--train_steps=2"])
  launch.check_required("ssd_to_imagenet", rows, ["--weights=ssd_tf1:/x/model.ckpt"])


def test_row_ids_name_a_folder_dataset_by_its_folder_not_its_path():
  assert configs.make_row_id(
      {"dataset": "folder:/data/users/me/my photos", "patch": "logits"}
  ) == "mobilenet_v2-folder_my_photos-logits-lr0.045"
  assert configs.make_row_id(
      {"entry": "multitask", "tasks": ("folder:/data/birds", "mnist5k:0-4"),
       "patch": "logits"}
  ) == "mobilenet_v2-mt-folder_birds+mnist5k_0-4-logits-frozen-lr0.045"


def test_logs_record_this_interpreter_as_python():
  assert launch.recorded([sys.executable, "-m", "experiments.run", "--a=b c"]) == (
      "python -m experiments.run '--a=b c'")
  # Another interpreter, named with --python, is recorded as given.
  assert launch.recorded(["/opt/py3/bin/python", "-m", "x"]) == (
      "/opt/py3/bin/python -m x")
