"""One self-contained HTML page for a whole reproduction (``thermosgd report``).

``write_report(runs_dir)`` reads every result folder under ``runs_dir`` (what
``thermosgd reproduce`` writes) and writes ``runs_dir/index.html``: a summary
of the paper's claims against the measurements, one section per experiment
with its figures and an interactive collapse plot, and the provenance.
"""

from thermosgd.report.collect import collect
from thermosgd.report.html import render, write_report
from thermosgd.report.records import Report
from thermosgd.report.terminal import summary_table

__all__ = ["write_report", "collect", "render", "summary_table", "Report"]
