"""Turns run workdirs (results.json) into paper-shaped Markdown/CSV tables and plots."""

from k4p1.report.collect import collect_runs
from k4p1.report.collect import load_run
from k4p1.report.collect import ResultsFileError
from k4p1.report.collect import RunResult
from k4p1.report.grids import build_grids
from k4p1.report.grids import Grid
from k4p1.report.paper import paper_transfer_accuracy
from k4p1.report.tables import build_table
from k4p1.report.tables import render_csv
from k4p1.report.tables import render_document
from k4p1.report.tables import render_markdown
from k4p1.report.writer import FORMATS
from k4p1.report.writer import write_report
