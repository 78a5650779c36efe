r"""Turns run workdirs into the paper's tables (Markdown, CSV) and plots (PNG).

Usage:
  python -m experiments.make_tables --results_dir=runs/ [--out_dir=report/] \
      [--format=md,csv,png]
  python -m experiments.make_tables --results_dir=runs_a/,runs_b/ --out_dir=report/

Finds every results.json under --results_dir (any depth; several directories,
comma-separated, are read as one) and writes
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

FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
  """Defines the flags (once: a no-op after)."""
  if "results_dir" in flag_values:
    return
  args = dict(flag_values=flag_values)
  flags.DEFINE_list("results_dir", None, "Directory holding run workdirs "
                    "(searched at any depth); several, comma-separated, are "
                    "read as one.", required=True, **args)
  flags.DEFINE_string("out_dir", None, "Output directory; default "
                      "--results_dir (required with several).", **args)
  flags.DEFINE_list("format", list(report.FORMATS), "Outputs to write, any of: "
                    f"{', '.join(report.FORMATS)}.", **args)


def app_main(argv) -> None:
  """Writes the report; absl's main once the flags are parsed."""
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if any(d and paths.is_url(d) for d in FLAGS.results_dir + [FLAGS.out_dir]):
    logs.import_tensorflow_quietly()
  for path in report.write_report(FLAGS.results_dir, FLAGS.out_dir, FLAGS.format):
    logging.info("wrote %s", path)


def main(argv=None) -> None:
  """Defines the flags, parses `argv` (default: the command line), runs."""
  define_flags()
  app.run(app_main, argv=argv)


if __name__ == "__main__":
  main()
