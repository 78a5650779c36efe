"""Writes the report: tables.md, one CSV per table and PNG plots, atomically."""

import os
import pathlib
from typing import Iterable, Sequence

from absl import logging

from k4p1 import atomic
from k4p1 import paths
from k4p1.report import collect
from k4p1.report import grids as grids_lib
from k4p1.report import plots
from k4p1.report import tables as tables_lib

FORMATS = ("md", "csv", "png")
TABLES_FILENAME = "tables.md"


def write_text_atomic(path: str | os.PathLike[str], text: str) -> pathlib.Path | str:
  """`atomic.write_text_atomic` that returns `path`, for the list of files written."""
  path = os.fspath(path) if paths.is_url(path) else pathlib.Path(path)
  atomic.write_text_atomic(path, text)
  return path


def _output_dir(directory: str | os.PathLike[str]) -> pathlib.Path | str:
  """A local `directory` as a created `pathlib.Path`; a URL as is."""
  if paths.is_url(directory):
    return os.fspath(directory)
  out = pathlib.Path(directory)
  out.mkdir(parents=True, exist_ok=True)
  return out


def _check_formats(formats: Iterable[str]) -> tuple[str, ...]:
  formats = tuple(dict.fromkeys(formats))
  bad = [f for f in formats if f not in FORMATS]
  if bad or not formats:
    raise ValueError(f"unknown output format(s) {bad or formats!r}; valid: {', '.join(FORMATS)}")
  return formats


def write_report(results_dir: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                 out_dir: str | os.PathLike[str] | None = None,
                 formats: Iterable[str] = FORMATS) -> list[pathlib.Path | str]:
  """Turns every results.json under `results_dir` into tables and plots.

  Args:
    results_dir: directory holding run workdirs, at any depth (local or a
      URL: `gs://...`, `ram://...`), or a sequence of them read as one (a
      comparison that reuses another config's committed runs).
    out_dir: where to write (created if missing); default `results_dir`
      (required with several directories).
    formats: any of "md" (tables.md), "csv" (<table_id>.csv per table),
      "png" (<table_id>_params.png / <table_id>_lr.png per plottable table).

  Returns:
    The files written, in writing order (`pathlib.Path`s, `str`s for URLs).

  Raises:
    FileNotFoundError: a `results_dir` is not a directory.
    ValueError: no results.json under `results_dir`, an unknown format, two
      directories holding a workdir of the same name, or several directories
      and no `out_dir`.
    collect.ResultsFileError: a malformed results.json (named in the message).
  """
  formats = _check_formats(formats)
  dirs = ([results_dir] if isinstance(results_dir, (str, os.PathLike))
          else list(results_dir))
  if len(dirs) != 1 and out_dir is None:
    raise ValueError(f"{len(dirs)} results directories {[str(d) for d in dirs]!r} "
                     "need an out_dir to write to")
  runs = collect.collect_runs_of(dirs)
  if not runs:
    shown = ", ".join(repr(str(d)) for d in dirs)
    raise ValueError(f"no {collect.RESULTS_FILENAME} under {shown}")
  out = _output_dir(out_dir if out_dir is not None else dirs[0])
  grids = grids_lib.build_grids(runs)
  tables = [tables_lib.build_table(grid) for grid in grids]
  written = []
  if "md" in formats:
    written.append(write_text_atomic(os.path.join(out, TABLES_FILENAME),
                                     tables_lib.render_document(tables, len(runs))))
  if "csv" in formats:
    for table in tables:
      written.append(write_text_atomic(os.path.join(out, f"{table.table_id}.csv"),
                                       tables_lib.render_csv(table)))
  if "png" in formats:
    for grid in grids:
      fig = plots.plot_grid(grid)
      if fig is not None:
        written.append(plots.save_figure(
            fig, os.path.join(out, plots.plot_filename(grid))))
  logging.info("Wrote %s file(s) for %s run(s) to %s", len(written), len(runs), out)
  return written
