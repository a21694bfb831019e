"""Reports: `occreid report RUN` writes RUN/report/report.md with its pictures beside it, for any run folder
`occreid train` wrote (occreid.reports.run_report). The demo's report is this report of each model plus the
demo's comparison table (occreid.apps.demo.report)."""

from occreid.reports.run_report import REPORT_DIR, write_run_report

__all__ = ["REPORT_DIR", "write_run_report"]
