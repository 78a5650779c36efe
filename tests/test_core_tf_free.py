"""What must run without TensorFlow or Keras: the core, the report, the configs,
the entry points' imports, the launcher's `--list` and `make_tables`.

Each check runs in a fresh interpreter (the test process has TensorFlow) and
fails if `tensorflow` or `keras` is in `sys.modules` at the end.
"""

import os
import subprocess
import sys
import textwrap

from helpers import report_testing as testing

_NO_TF = ("\nbad = sorted(m for m in ('tensorflow', 'keras') if m in sys.modules)"
          "\nassert not bad, f'imported {bad}'\nprint('ok')\n")


def _run(script: str, cwd=None) -> subprocess.CompletedProcess:
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  done = subprocess.run([sys.executable, "-c", textwrap.dedent(script) + _NO_TF],
                        capture_output=True, text=True, env=env, cwd=cwd,
                        timeout=300, check=False)
  assert done.returncode == 0 and done.stdout.endswith("ok\n"), (
      done.stdout[-2000:] + done.stderr[-4000:])
  return done


def test_the_core_report_configs_and_entry_points_import_without_tensorflow():
  _run("""
      import sys
      import k4p1.core
      import k4p1.report
      from k4p1.report import cells, collect, grids, plots, selection, tables, writer
      import experiments.configs as configs
      for name in configs.available():
        configs.load_module(name)
      import experiments, experiments.config_flags, experiments.launch
      import experiments.local_cluster, experiments.make_tables, experiments.run
      import experiments.multitask, experiments.transfer, experiments.demo
      import experiments.check_folder_transfer
      """)


def test_importing_the_entry_points_defines_no_flag_and_leaves_stderr_alone():
  """Flags are defined in each entry point's main; TensorFlow is imported there."""
  _run("""
      import os, sys
      from absl import app, flags, logging  # absl's own flags.
      before = set(flags.FLAGS)
      stat = os.fstat(2)
      import experiments.run, experiments.transfer, experiments.multitask
      import experiments.demo, experiments.launch, experiments.local_cluster
      import experiments.make_tables, experiments.check_folder_transfer
      assert set(flags.FLAGS) == before, sorted(set(flags.FLAGS) - before)
      assert os.fstat(2) == stat
      """)


def test_launch_list_runs_without_tensorflow():
  done = _run("""
      import runpy, sys
      sys.argv = ["launch", "--config=paper_transfer_mobilenet_v2", "--list"]
      try:
        runpy.run_module("experiments.launch", run_name="__main__")
      except SystemExit as e:
        assert not e.code, e.code
      """)
  assert "mobilenet_v2-cifar10-224px-scale_bias+logits-lr0.045" in done.stdout


def test_make_tables_runs_without_tensorflow(tmp_path):
  testing.write_run(tmp_path / "runs" / "a", patch="logits", tasks={"cifar10": 0.5})
  testing.write_run(tmp_path / "runs" / "b", patch="scale_bias+logits",
                    tasks={"cifar10": 0.7})
  _run(f"""
      import runpy, sys
      sys.argv = ["make_tables", "--results_dir={tmp_path / 'runs'}",
                  "--out_dir={tmp_path / 'out'}"]
      try:
        runpy.run_module("experiments.make_tables", run_name="__main__")
      except SystemExit as e:
        assert not e.code, e.code
      """)
  assert "logits+scale_bias" in (tmp_path / "out" / "tables.md").read_text()
  assert list((tmp_path / "out").glob("*.png"))
