"""Export a finished run: every format into `run_dir/export/`, each checked against the Keras model.

Formats and TFLite modes are validated, and the export folder's writability probed, before
anything is written. TFLite and ONNX exports are compared with the Keras model on validation
images (max probability gap, top-1 agreement); the figures go to `export/export_report.json` and
the log, with a warning when an export agrees on fewer than 99% of top-1 answers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from keras_transfer.config import EXPORT_FORMATS
from keras_transfer.core.files import check_writable
from keras_transfer.core.run_dir import RunDir
from keras_transfer.deploy.parity import AGREEMENT_WARNING
from keras_transfer.deploy.tflite import check_tflite_modes



def check_formats(formats: Sequence[str]) -> list[str]:
    """The formats as a list, or a one-line ValueError naming the closest valid format."""
    from keras_transfer.core.names import unknown_name_message

    for fmt in formats:
        if fmt not in EXPORT_FORMATS:
            raise ValueError(unknown_name_message("export format", fmt, EXPORT_FORMATS))
    return list(formats)


def export_run(run_dir: str | os.PathLike, formats: Sequence[str] = ("saved_model", "keras"),
               tflite_modes: Sequence[str] = ("float32",), log: Callable[[str], None] = print, model=None,
               data=None) -> dict[str, Path]:
    """Export a finished run's model in `formats` into `run_dir/export/`; log and record parity of each.

    The SavedModel goes to `export/saved_model/<version>/` (1, or one past the highest already
    there) for TensorFlow Serving; `.keras`, `model_<mode>.tflite` and `model.onnx` beside it,
    with `labels.txt` and `export_report.json`.
    """
    from keras_transfer.config import load_config
    from keras_transfer.core.files import (
        atomic_write_text,
        check_label_count,
        is_regression,
        make_dir,
        read_labels,
        write_labels,
    )

    run = RunDir(run_dir)
    run_dir = run.path
    formats, tflite_modes = check_formats(formats), check_tflite_modes(tflite_modes)
    config = load_config(run.config_path)
    if model is None:
        model = run.load_model()
    out = run.export_dir
    check_writable(out, purpose="export into", hint="choose a run folder you can write to")
    class_names = run.labels()
    check_label_count(class_names, int(model.output.shape[-1]), run.labels_path)
    regression = is_regression(class_names)
    make_dir(out)
    write_labels(run.exported_labels_path, class_names)  # for .keras and .tflite
    written, report = {}, {}
    if "saved_model" in formats:
        from keras_transfer.deploy.saved_model import (
            export_saved_model,
            next_version_dir,
        )

        written["saved_model"] = export_saved_model(model, next_version_dir(run.saved_model_dir), class_names,
                                                    resize=config.data.resize)
        report["saved_model"] = {"path": str(written["saved_model"])}
        log(f"SavedModel: {written['saved_model']} (signatures serving_default, serve_bytes)")
    if "keras" in formats:
        from keras_transfer.deploy.inference import export_keras

        written["keras"] = export_keras(model, run.exported_keras_path)
        report["keras"] = {"path": str(written["keras"])}
        log(f"Keras: {written['keras']}")
    pixels = None
    if {"tflite", "onnx"} & set(formats):
        from keras_transfer.data import load_data

        data = data or load_data(config.data, task=config.model.task)
        pixels = _split_pixels(data, "val")
    if "tflite" in formats:
        from keras_transfer.deploy.tflite import export_tflite, tflite_parity

        train = _split_pixels(data, "train", limit=200) if "int8" in tflite_modes else None
        for mode in tflite_modes:
            path = export_tflite(model, out / f"model_{mode}.tflite", mode=mode, representative=train)
            written[f"tflite_{mode}"] = path
            report[f"tflite_{mode}"] = _checked(f"TFLite {mode}", path, tflite_parity(model, path, pixels), log,
                                                regression)
    if "onnx" in formats:
        from keras_transfer.deploy.onnx import export_onnx, onnx_parity

        path = written["onnx"] = export_onnx(model, out / "model.onnx", class_names)
        report["onnx"] = _checked("ONNX", path, onnx_parity(model, path, pixels), log, regression)
    # A re-export of some formats keeps the figures of the others, still on disk beside them.
    previous = out / "export_report.json"
    merged = {**(json.loads(previous.read_text()) if previous.is_file() else {}), **report}
    atomic_write_text(previous, json.dumps(merged, indent=2) + "\n")
    if run.report_path.is_file():  # the run's page shows the export parity too
        from keras_transfer.interpret.report_html import write_report_html

        write_report_html(run_dir)
    return written


def _checked(name: str, path: Path, parity: dict, log: Callable[[str], None], regression: bool = False) -> dict:
    size = path.stat().st_size
    if regression:  # one value per image: its largest gap is the parity, there is no top-1 to agree on
        parity = {"images": parity["images"], "max_abs_diff": parity["max_abs_diff"]}
        log(f"{name}: {path} ({size / 1e6:.1f} MB); on {parity['images']} validation images: "
            f"max |value - value_keras| {parity['max_abs_diff']:.2e}")
        return {"path": str(path), "bytes": size, **parity}
    log(f"{name}: {path} ({size / 1e6:.1f} MB); on {parity['images']} validation images: "
        f"max |p - p_keras| {parity['max_abs_diff']:.2e}, top-1 agreement {parity['top1_agreement']:.1%}")
    if parity["top1_agreement"] < AGREEMENT_WARNING:
        log(f"warning: {name} agrees with the Keras model on only {parity['top1_agreement']:.1%} of top-1 "
            f"answers (under {AGREEMENT_WARNING:.0%}); check it on your own images before shipping it")
    return {"path": str(path), "bytes": size, **parity}


def _split_pixels(data, split: str, limit: int = 64) -> np.ndarray:
    """Up to `limit` float pixels [N, H, W, 3] of a split, without augmentation (val falls back to train)."""
    if split not in data.splits:
        split = "train"
    batches, count = [], 0
    for x, _ in data.dataset(split, training=False):
        batches.append(x.numpy())
        count += len(batches[-1])
        if count >= limit:
            break
    return np.concatenate(batches)[:limit]
