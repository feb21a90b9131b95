"""report.html renders in a real browser (headless Chromium) and is not blank.

Chromium is not a Python dependency: without it this test is skipped with the install command.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from keras_transfer.interpret import (
    Predictions,
    write_error_analysis,
    write_report_html,
)

INSTALL = "apt-get install -y chromium"


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    reason = f"headless Chromium not found; install it with `{INSTALL}` (Debian) to render report.html"
    print(reason)
    pytest.skip(reason)


def _run_dir(path):
    from keras_transfer.metrics import (
        plot_confusion_matrix,
        plot_training_curves,
    )

    (path / "plots").mkdir(parents=True)
    history = [{"epoch": e, "stage": "head" if e < 3 else "top", "loss": 1 / e, "val_loss": 1.2 / e,
                "accuracy": 1 - 0.5 / e, "val_accuracy": 1 - 0.6 / e} for e in range(1, 6)]
    plot_training_curves(history, path / "plots" / "training_curves.png")
    plot_confusion_matrix([[5, 1], [2, 4]], ["cat", "dog"], path / "plots" / "confusion_matrix.png")
    rng = np.random.default_rng(0)
    images = {i: rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for i in range(4)}
    predictions = Predictions(np.array([[0.9, 0.1], [0.2, 0.8], [0.99, 0.01], [0.4, 0.6]]), np.array([0, 0, 1, 1]),
                              images, ["a.jpg", "b.jpg", "c.jpg", "d.jpg"])
    write_error_analysis(predictions, ["cat", "dog"], path, split="test")
    (path / "metrics.json").write_text(json.dumps({"test": {"examples": 12, "accuracy": 0.75, "per_class": {
        "cat": {"precision": 0.71, "recall": 0.83, "f1": 0.77, "support": 6},
        "dog": {"precision": 0.8, "recall": 0.67, "f1": 0.73, "support": 6}}}}))
    (path / "data_report.json").write_text(json.dumps({"source": "folder:pets", "image_size": [32, 32], "task": "multiclass",
                                                       "class_names": ["cat", "dog"], "counts": {"train": {"cat": 20, "dog": 20}},
                                                       "skipped": [{"path": "pets/cat/bad.jpg", "reason": "not an image"}]}))
    (path / "config.yaml").write_text("data: {source: 'folder:pets'}\n")
    return write_report_html(path)


def test_report_html_renders_in_headless_chromium_and_is_not_blank(tmp_path):
    browser = _chromium()
    page = _run_dir(tmp_path / "run")
    text = page.read_text()
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:|//)", text), "the page must reference no external URL"
    assert "<script" not in text.lower()
    shot = tmp_path / "shot.png"
    done = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                           "--disable-component-update", "--disable-sync", "--no-first-run",
                           f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,2400",
                           f"--screenshot={shot}", page.as_uri()], capture_output=True, text=True, timeout=120, check=False)
    assert shot.is_file(), done.stderr[-2000:]
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.std() > 10, "the screenshot is blank"
    dark = (pixels < 128).mean()
    assert 0.01 < dark < 0.6, f"{dark:.1%} dark pixels: text and figures should show on a light page"
