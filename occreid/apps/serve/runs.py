"""A training run's report as a page: RUN/report/report.md (`occreid report RUN`), or RUN/report.md (a demo
folder's report), rendered to HTML when it is there, else the run's own curves (metrics.jsonl) and evaluation
table (eval.json), drawn here. Only the pictures beside a report are served with it."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from occreid.errors import OccreidError
from occreid.reports.pictures import read_metrics

REPORTS = (Path("report") / "report.md", Path("report.md"))
PICTURES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif"}


def report_file(folder: Path) -> Path | None:
    """The run's report.md (report/report.md first), None without one."""
    return next((folder / name for name in REPORTS if (folder / name).is_file()), None)


def check_run(folder: Path) -> Path:
    """A --run folder: it must exist and hold a report, metrics.jsonl or eval.json."""
    if not folder.is_dir():
        raise OccreidError(f"--run {folder}: no such folder; give a training run's folder (occreid train)")
    if report_file(folder) is None and not any(
        (folder / n).is_file() for n in ("metrics.jsonl", "eval.json")
    ):
        raise OccreidError(
            f"--run {folder}: not a training run (no report/report.md, metrics.jsonl or eval.json in it)"
        )
    return folder


def page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        '<link rel="stylesheet" href="/static/page.css"></head>'
        f'<body class="report"><p><a href="/">&larr; search</a></p>{body}</body></html>'
    )


def report_page(folder: Path, name: str) -> str:
    """The HTML page of one run: its report.md (raw HTML in it is escaped, not run), or curves and table."""
    report = report_file(folder)
    if report is not None:
        from markdown_it import MarkdownIt

        markdown = MarkdownIt("commonmark", {"html": False}).enable("table")
        return page(f"{name}: report", markdown.render(report.read_text(errors="replace")))
    body = f"<h1>{html.escape(name)}</h1><p>No <code>report/report.md</code> in this run (write one with "
    body += "<code>occreid report RUN</code>); its own files:</p>"
    metrics = folder / "metrics.jsonl"
    records = read_metrics(metrics) if metrics.is_file() else []
    train = [r for r in records if r.get("kind") == "train" and _number(r.get("loss"))]
    evals = [r for r in records if r.get("kind") == "eval"]
    if train:
        body += "<h2>Training loss</h2>" + svg_curve([(r["step"], r["loss"]) for r in train], "step", "loss")
    for key in ("mAP", "rank1"):
        points = [(r.get("epoch", i), r[key]) for i, r in enumerate(evals) if _number(r.get(key))]
        if len(points) > 1:
            body += f"<h2>{key} by epoch</h2>" + svg_curve(points, "epoch", key)
    body += eval_table(folder / "eval.json")
    return page(f"{name}: run", body)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and value == value and abs(value) != float("inf")


def eval_table(path: Path) -> str:
    """eval.json's numbers as a two-column table (settings left out)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return "<p>No readable eval.json.</p>"
    rows = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{v:.4g}</td></tr>"
        for k, v in data.items()
        if _number(v) and not isinstance(v, bool)
    )
    return f"<h2>Evaluation (eval.json)</h2><table><tr><th>metric</th><th>value</th></tr>{rows}</table>"


def svg_curve(points: list[tuple[float, float]], x_label: str, y_label: str) -> str:
    """A line chart as inline SVG (no script, no external file)."""
    width, height, pad = 560, 220, 40
    xs, ys = [float(p[0]) for p in points], [float(p[1]) for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    sx = (width - 2 * pad) / ((x1 - x0) or 1.0)
    sy = (height - 2 * pad) / ((y1 - y0) or 1.0)
    line = " ".join(f"{pad + (x - x0) * sx:.1f},{height - pad - (y - y0) * sy:.1f}" for x, y in zip(xs, ys))
    return (
        f'<svg class="curve" width="{width}" height="{height}" role="img" aria-label="{y_label}">'
        f'<polyline fill="none" stroke="#1f6feb" stroke-width="1.5" points="{line}"/>'
        f'<text x="{pad}" y="{height - 8}">{x_label} {x0:g} to {x1:g}</text>'
        f'<text x="4" y="14">{y_label} {y0:.4g} to {y1:.4g}</text></svg>'
    )
