"""`report.html`: one self-contained page per run directory, readable offline and by e-mail.

Everything the run left behind, on one page: the config, the data report (counts, skipped files),
training curves with stage boundaries, per-class metrics, the confusion matrix, the worst
mistakes, Grad-CAM, and the layer probe and export parity where the run has them. Images are
embedded as base64 PNG; the page is plain HTML and CSS with no script and no external URL, so it
renders the same from a mail attachment as from the disk.
"""

from __future__ import annotations

import base64
import csv
import html
import json
from pathlib import Path
from typing import Any

from keras_transfer.core.files import atomic_write_text
from keras_transfer.core.run_dir import RunDir

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;background:#fff;line-height:1.4}
h1{font-size:1.6em;border-bottom:2px solid #2b6cb0;padding-bottom:.2em}h2{font-size:1.2em;margin-top:1.8em;color:#2b6cb0}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#edf2f7}td:first-child,th:first-child{text-align:left}img{max-width:100%;border:1px solid #ddd}
pre{background:#f7fafc;border:1px solid #ddd;padding:.8em;overflow-x:auto;font-size:.85em}
.muted{color:#666;font-size:.9em}.grid{display:flex;flex-wrap:wrap;gap:1em}.big{font-size:1.3em;font-weight:600}
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def _scores(metrics: dict[str, Any]) -> str:
    parts = []
    for split, values in metrics.items():
        shown = ", ".join(f"{k} {v:.4f}" for k, v in values.items() if isinstance(v, float))
        parts.append(f"<p><span class='big'>{_e(split)}</span>: {_e(shown)} ({values.get('examples', '?')} images)</p>")
        if values.get("note"):
            parts.append(f"<p><b>{_e(values['note'])}</b></p>")
        if values.get("per_class"):
            rows = [[name, f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r.get('f1', 0):.3f}", r["support"]]
                    for name, r in values["per_class"].items()]
            parts.append(_table(["class", "precision", "recall", "F1", "support"], rows))
    return "".join(parts)


def _data(report: dict[str, Any]) -> str:
    counts = report.get("counts") or {}
    splits = list(counts)
    rows = [[name] + [counts[s].get(name, 0) for s in splits] for name in report.get("class_names", [])]
    out = f"<p>source <code>{_e(report.get('source'))}</code>, image size {_e(report.get('image_size'))}, task {_e(report.get('task'))}</p>"
    out += _table(["class", *splits], rows) if splits else "<p class='muted'>streamed split sizes are not counted</p>"
    skipped = report.get("skipped") or []
    out += f"<p>{len(skipped)} file(s) skipped</p>"
    if skipped:
        out += _table(["file", "reason"], [[s["path"], s["reason"]] for s in skipped[:50]])
    return out


def _health(health: dict[str, Any]) -> str:
    """Duplicates (and, from the check, near-duplicates, suspects, outliers) and the class balance."""
    out = ""
    balance = health.get("balance") or {}
    if balance:
        ratio = f"{balance['ratio']:.2f}x" if balance.get("ratio") else "an empty class"
        applied = health.get("balance_applied")
        out += (f"<p>class balance: largest {_e(balance['largest'])}, smallest {_e(balance['smallest'])}: {_e(ratio)}"
                + (f"; data.balance came to <b>{_e(applied)}</b>" if applied else "") + "</p>")
    groups = health.get("duplicates", health.get("exact_duplicates")) or []
    leaks = [g for g in groups if g["kind"] == "cross-split"]
    if leaks:
        out += (f"<p><b>warning: {len(leaks)} image(s) appear in more than one split: those scores are measured on "
                "copies of training images</b></p>")
    out += f"<p>{len(groups)} group(s) of identical images (each kept in one split when splits are carved)</p>"
    if groups:
        out += _table(["kind", "files", "labels", "splits"],
                      [[g["kind"], " == ".join(g["files"]), ", ".join(g["labels"]), ", ".join(g["splits"])]
                       for g in groups[:30]])
    for key, title in (("near_duplicates", "near-duplicate pair(s)"), ("suspects", "suspect label(s)"),
                       ("outliers", "outlier(s)")):
        if key in health:
            out += f"<p>{len(health[key])} {title}</p>"
    if health.get("excluded"):
        out += f"<p>{len(health['excluded'])} file(s) left out by data.exclude</p>"
    return out


def _mistakes(path: Path, limit: int = 20) -> str:
    with path.open(newline="") as stream:
        rows = list(csv.reader(stream))
    if len(rows) <= 1:
        return "<p>no mistakes</p>"
    return (f"<p>{len(rows) - 1} misclassified (all in mistakes.csv); the {min(limit, len(rows) - 1)} worst:</p>"
            + _table(rows[0], rows[1:limit + 1]))


def render_report(run_dir: str | Path) -> str:
    """The HTML text of a run directory's report, built from the files it holds."""
    run_dir = Path(run_dir)
    plots = run_dir / "plots"
    sections: list[tuple[str, str]] = []
    metrics = _read_json(RunDir(run_dir).metrics_path)
    if metrics:
        sections.append(("Scores and per-class metrics", _scores(metrics)))
    report = _read_json(run_dir / "data_report.json")
    if report:
        sections.append(("Data", _data(report)))
    health = _read_json(run_dir / "data_health.json")
    if health:
        sheets = [_image(run_dir / f"{n}.png", n) for n in ("suspects", "outliers") if (run_dir / f"{n}.png").is_file()]
        sections.append(("Data health", _health(health) + "".join(sheets)))
    for name, title in (("training_curves", "Training curves (dashed lines: stage boundaries)"),
                        ("confusion_matrix", "Confusion matrix"), ("predicted_vs_true", "Predicted vs true targets"),
                        ("misclassified", "Worst mistakes"),
                        ("gradcam", "Grad-CAM: where the evidence lies"), ("layer_probe", "Layer probe"),
                        ("block_patches", "What each block sees")):
        if (plots / f"{name}.png").is_file():
            body = _image(plots / f"{name}.png", title)
            if name == "misclassified" and (run_dir / "mistakes.csv").is_file():
                body += _mistakes(run_dir / "mistakes.csv")
            if name == "layer_probe" and (run_dir / "probe.md").is_file():
                body += f"<pre>{_e((run_dir / 'probe.md').read_text())}</pre>"
            sections.append((title, body))
    for parity_file in (run_dir / "export" / "export_report.json",):
        parity = _read_json(parity_file)
        if parity:
            sections.append(("Export parity", f"<pre>{_e(json.dumps(parity, indent=1))}</pre>"))
    if (run_dir / "classifier.json").is_file():
        sections.append(("Classifier on frozen features", f"<pre>{_e((run_dir / 'classifier.json').read_text())}</pre>"))
    if (run_dir / "config.yaml").is_file():
        sections.append(("Config", f"<pre>{_e((run_dir / 'config.yaml').read_text())}</pre>"))
    body = "".join(f"<h2>{_e(title)}</h2>{content}" for title, content in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(run_dir.name)}</title>'
            f"<style>{_CSS}</style></head><body><h1>Run {_e(run_dir.name)}</h1>"
            f"<p class='muted'>written by keras_transfer; every image is embedded in this file</p>{body}</body></html>\n")


def write_report_html(run_dir: str | Path) -> Path:
    """Write `run_dir/report.html` from the run directory's files; return its path."""
    run_dir = Path(run_dir)
    return atomic_write_text(run_dir / "report.html", render_report(run_dir))
