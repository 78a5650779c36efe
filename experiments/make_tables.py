r"""Turns run workdirs into the paper's tables (Markdown, CSV) and plots (PNG).

Usage:
  python -m experiments.make_tables --results_dir=runs/ [--out_dir=report/] \
      [--format=md,csv,png]

Finds every results.json under --results_dir (any depth) and writes
<out_dir>/tables.md, one <table_id>.csv per table and the PNG plots. Runs
made with --validation_fraction are shown at each row's learning rate
selected on validation accuracy (the captions say so; k4p1.report.selection).
It imports no TensorFlow; a gs:// (or other URL) directory is read through
TensorFlow's filesystems, imported then.
"""

from absl import app
from absl import flags
from absl import logging

from experiments import logs
from k4p1 import paths
from k4p1 import report

_RESULTS_DIR = flags.DEFINE_string(
    "results_dir", None, "Directory holding run workdirs (searched at any depth).",
    required=True)
_OUT_DIR = flags.DEFINE_string("out_dir", None, "Output directory; default --results_dir.")
_FORMAT = flags.DEFINE_list("format", list(report.FORMATS),
                            f"Outputs to write, any of: {', '.join(report.FORMATS)}.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if any(d and paths.is_url(d) for d in (_RESULTS_DIR.value, _OUT_DIR.value)):
    logs.import_tensorflow_quietly()
  for path in report.write_report(_RESULTS_DIR.value, _OUT_DIR.value, _FORMAT.value):
    logging.info("wrote %s", path)


if __name__ == "__main__":
  app.run(main)
