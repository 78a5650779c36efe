r"""Runs the rows of a table config into one results directory.

  python -m experiments.launch --config=paper_transfer_mobilenet_v2 \
      --results_dir=runs/table1 [--row=3] [--list] [--dry_run] \
      [--seeds=0,1,2] [--data_dir=... --weights=... --train_steps=...]

Each row of the config's `get_rows()` runs as its own process,
`python -m experiments.run --config=<config>@<row_id>
--workdir=<results_dir>/<row_id> <extra flags>` (the entry point of every
kind of run, which it reads from the row's fields), so that rows share no
TensorFlow state and a failed row does not stop the others. Flags the
launcher does not know (after its own) are passed to every row and override
the config. Rows whose workdir already has results.json are skipped, so a
rerun continues where the last one stopped; `--row=N` (an index or a row id)
runs one row, e.g. as one task of a cluster job array. `--seeds=0,1,2` (or
a config's `SEEDS`) runs every row once per seed, into
`<results_dir>/<row_id>-seed<N>` with `--seed=N`; the tables then show each
cell as mean +- sample std (n) over its seeds. With `--validation_fraction=0.2`
(passed to every row) each run holds out a seeded validation split of its
training split and records its validation accuracy; for rows that differ
only in learning rate, the tables then show test accuracy at the rate with
the best mean validation accuracy over the seeds, not at a fixed rate
(k4p1.report.selection). Each row's output goes
to the terminal and to `<results_dir>/logs/<row_id>.log`; its command, exit
code and wall time to `<results_dir>/logs/<row_id>.json`. Afterwards:
`python -m experiments.make_tables --results_dir=<results_dir>`.
"""

import functools
import json
import os
import shlex
import subprocess
import sys
import time

from absl import app
from absl import flags

from experiments import configs
from experiments import logs
from k4p1 import atomic
from k4p1 import paths
from k4p1 import workdir as workdir_lib

RESULTS_FILE = workdir_lib.RESULTS_FILE
LOG_DIR = "logs"


def define_flags() -> flags.FlagValues:
  """The launcher's own flags, apart from absl's global ones.

  The entry point has flags of the same names (--config); flags not defined
  here are passed through to the rows.
  """
  launch_flags = flags.FlagValues()
  args = dict(flag_values=launch_flags)
  flags.DEFINE_string("config", None, "Table config from experiments/configs/ "
                      "(one that defines get_rows()); required.", **args)
  flags.DEFINE_string("results_dir", None, "Directory for the rows' workdirs "
                      "(<results_dir>/<row_id>) and logs.", **args)
  flags.DEFINE_string("row", None, "Run only this row: an index (as --list "
                      "prints) or a row id. Default: every row, in order.",
                      **args)
  flags.DEFINE_bool("list", False, "Print the rows (index, id, kind of run, "
                    "status) and exit.", **args)
  flags.DEFINE_bool("dry_run", False, "Print each row's command; run nothing.",
                    **args)
  flags.DEFINE_list("seeds", None, "Run every row once per seed (e.g. 0,1,2), "
                    "into <row_id>-seed<N>; default: the config's SEEDS, or "
                    "one run per row with the config's seed.", **args)
  flags.DEFINE_string("python", sys.executable, "Python interpreter of the "
                      "rows.", **args)
  return launch_flags


def expand_seeds(rows, seeds) -> list:
  """One run per row and seed: each row gets "run_id" (its workdir) and "seed".

  Args:
    rows: from `configs.load_rows`.
    seeds: ints, or None/empty for one run per row with the config's seed
      (run_id = row_id, seed None: nothing is added to the command).

  Raises:
    ValueError: a seed that is not an integer, or one given twice.
  """
  if not seeds:
    return [dict(row, run_id=row["row_id"], seed=None) for row in rows]
  try:
    seeds = [int(s) for s in seeds]
  except ValueError as e:
    raise ValueError(f"--seeds must be integers, e.g. 0,1,2; got {seeds}.") from e
  if len(set(seeds)) != len(seeds):
    raise ValueError(f"--seeds repeats a seed: {seeds}.")
  return [dict(row, run_id=f"{row['row_id']}-seed{seed}", seed=seed)
          for row in rows for seed in seeds]


def row_kind(run: dict) -> str:
  """The kind of run of a row, or of one seed's run of it (`expand_seeds`)."""
  return configs.row_kind({k: v for k, v in run.items() if k != "run_id"})


def row_command(config: str, row: dict, results_dir: str, extra_flags,
                python: str = "python") -> list:
  """The argv that runs `row` of table `config` into its workdir."""
  run_id = row.get("run_id", row["row_id"])
  seed = [f"--seed={row['seed']}"] if row.get("seed") is not None else []
  return [python, "-m", configs.ENTRY_POINT,
          f"--config={config}{configs.ROW_SEPARATOR}{row['row_id']}",
          f"--workdir={os.path.join(results_dir, run_id)}",
          *seed, *extra_flags]


def row_status(row: dict, results_dir) -> str:
  """"done" (results.json written), "started" (workdir exists) or "pending"."""
  if not results_dir:
    return "pending"
  workdir = os.path.join(results_dir, row.get("run_id", row["row_id"]))
  if paths.exists(os.path.join(workdir, RESULTS_FILE)):
    return "done"
  return "started" if paths.isdir(workdir) else "pending"


def given_flag_names(extra_flags) -> set:
  """Names of the `--name=value` / `--name` / `--noname` flags in `extra_flags`."""
  names = set()
  for arg in extra_flags:
    if arg.startswith("--"):
      name = arg[2:].split("=", 1)[0]
      names.add(name)
      if name.startswith("no"):
        names.add(name[2:])
  return names


def check_required(config: str, rows, extra_flags) -> None:
  """Raises ValueError if a row still holds a `configs.required` placeholder."""
  given = given_flag_names(extra_flags)
  missing = sorted({key for row in rows for key, value in row.items()
                    if configs.is_required_placeholder(value) and key not in given})
  if missing:
    hints = sorted({row[key] for row in rows for key in missing
                    if configs.is_required_placeholder(row.get(key))})
    raise ValueError(f"Config {config!r} needs {', '.join('--' + m for m in missing)} "
                     f"({'; '.join(h.split('pass ', 1)[1] for h in hints)}).")


def _open_log(log_path: str):
  """`log_path` opened for appending (a URL through tf.io.gfile)."""
  if paths.is_url(log_path):  # On object stores, uploaded when closed.
    return paths.tensorflow().io.gfile.GFile(log_path, "a")
  return open(log_path, "a", encoding="utf-8")


def recorded(command) -> str:
  """`command` as logs record it: this interpreter as `python`, since a
  machine's interpreter path means nothing to the results' readers."""
  if command and command[0] == sys.executable:
    command = ["python"] + list(command[1:])
  return shlex.join(command)


def run_row(command, log_path: str) -> int:
  """Runs `command`, copying its output to stdout and `log_path`; its exit code."""
  with _open_log(log_path) as log:
    log.write(f"$ {recorded(command)}\n")
    log.flush()
    process = subprocess.Popen(command, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, bufsize=1)
    for line in process.stdout:
      sys.stdout.write(line)
      log.write(line)
    return process.wait()


def launch(config: str, results_dir: str, rows, extra_flags, python: str,
           dry_run: bool = False) -> dict:
  """Runs `rows` in order, skipping finished ones.

  Returns:
    {row_id: "done" (skipped), "ok", "failed (exit N)" or "dry run"}.
  """
  outcome = {}
  log_dir = os.path.join(results_dir, LOG_DIR)
  for row in rows:
    row_id = row.get("run_id", row["row_id"])
    command = row_command(config, row, results_dir, extra_flags, python)
    if row_status(row, results_dir) == "done":
      print(f"[launch] {row_id}: done already, skipped.", flush=True)
      outcome[row_id] = "done"
      continue
    if dry_run:
      print(shlex.join(command), flush=True)
      outcome[row_id] = "dry run"
      continue
    paths.makedirs(log_dir)
    print(f"[launch] {row_id}: {recorded(command)}", flush=True)
    began = time.time()
    code = run_row(command, os.path.join(log_dir, f"{row_id}.log"))
    wall = time.time() - began
    record = {
        "row_id": row_id, "config": config, "kind": row_kind(row),
        "seed": row.get("seed"),
        "command": recorded(command), "returncode": code, "wall_s": wall,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    atomic.write_text_atomic(os.path.join(log_dir, f"{row_id}.json"),
                             json.dumps(record, indent=2, sort_keys=True))
    outcome[row_id] = "ok" if code == 0 else f"failed (exit {code})"
    print(f"[launch] {row_id}: {outcome[row_id]} in {wall:.0f} s.", flush=True)
  return outcome


def app_main(argv, launch_flags: flags.FlagValues) -> None:
  """Runs (or lists) the rows; absl's main once `launch_flags` are parsed."""
  extra_flags = argv[1:]
  bad = [a for a in extra_flags if not a.startswith("-")]
  if bad:
    logs.fatal(f"Unexpected arguments {bad}: extra arguments must be flags "
               "(--name=value) for the rows.")
  for own in ("workdir", "config"):
    if own in given_flag_names(extra_flags):
      logs.fatal(f"--{own} is set by the launcher for every row.")
  config = launch_flags.config
  if not config:
    logs.fatal("--config is required: a table config, one of "
               f"{', '.join(n for n in configs.available() if configs.is_table(n))}.")
  if launch_flags.seeds and "seed" in given_flag_names(extra_flags):
    logs.fatal("Pass --seeds or --seed, not both.")
  results_dir = launch_flags.results_dir
  if results_dir and paths.is_url(results_dir):
    logs.import_tensorflow_quietly()  # Read and written through tf.io.gfile.
  try:
    all_rows = configs.load_rows(config)
    rows = all_rows
    if launch_flags.row is not None:
      rows = [configs.select_row(rows, launch_flags.row, config)]
    seeds = launch_flags.seeds
    if seeds is None and "seed" not in given_flag_names(extra_flags):
      seeds = configs.seeds(config)
    runs = expand_seeds(rows, seeds)
  except ValueError as e:
    logs.fatal(e)
  if launch_flags.list:
    index = {row["row_id"]: i for i, row in enumerate(all_rows)}
    for run in runs:
      print(f"{index[run['row_id']]:3d}  {run['run_id']}  "
            f"[{row_kind(run)}]  {row_status(run, results_dir)}")
    return
  if not results_dir:
    logs.fatal("--results_dir is required (except with --list).")
  try:
    check_required(config, rows, extra_flags)
  except ValueError as e:
    logs.fatal(e)
  began = time.time()
  outcome = launch(config, results_dir, runs, extra_flags, launch_flags.python,
                   dry_run=launch_flags.dry_run)
  failed = {k: v for k, v in outcome.items() if v.startswith("failed")}
  print(f"[launch] {len(outcome)} row(s) of {config} in "
        f"{time.time() - began:.0f} s: "
        f"{sum(v == 'ok' for v in outcome.values())} run, "
        f"{sum(v == 'done' for v in outcome.values())} already done, "
        f"{len(failed)} failed{': ' + ', '.join(failed) if failed else ''}.",
        flush=True)
  if failed:
    sys.exit(1)


def parse_known_flags(argv, launch_flags: flags.FlagValues):
  """Parses the launcher's and absl's flags; leaves the others for the rows."""
  if any(arg in ("-h", "--help", "--helpshort") for arg in argv[1:]):
    print(__doc__ + "\nflags:\n" + launch_flags.main_module_help())
    sys.exit(0)
  return flags.FLAGS(launch_flags(argv, known_only=True), known_only=True)


def main(argv=None) -> None:
  """Defines the flags, parses `argv` (default: the command line), launches."""
  launch_flags = define_flags()
  app.run(functools.partial(app_main, launch_flags=launch_flags), argv=argv,
          flags_parser=functools.partial(parse_known_flags,
                                         launch_flags=launch_flags))


if __name__ == "__main__":
  main()
