"""Export a finished run: every format into `run_dir/export/`, each checked against the Keras model.

Formats and TFLite modes are validated, and the export folder's writability probed, before
anything is written. TFLite and ONNX exports are compared with the Keras model on validation
images (max probability gap, top-1 agreement); the figures go to `export/export_report.json` and
the log, with a warning when an export agrees on fewer than 99% of top-1 answers.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from keras_transfer.deploy.parity import AGREEMENT_WARNING
from keras_transfer.deploy.tflite import check_tflite_modes

FORMATS = ("saved_model", "keras", "tflite", "onnx")


def check_formats(formats: Sequence[str]) -> list[str]:
    """The formats as a list, or a one-line ValueError naming the closest valid format."""
    from keras_transfer.core.names import unknown_name_message

    for fmt in formats:
        if fmt not in FORMATS:
            raise ValueError(unknown_name_message("export format", fmt, FORMATS))
    return list(formats)


def check_writable(folder: Path) -> None:
    """Raise a one-line ValueError unless `folder` (or its nearest existing parent) accepts new files."""
    probe = folder
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"cannot export into {folder}: {probe} is not a folder")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as error:
        raise ValueError(f"cannot export into {folder}: {probe} is not writable ({error.strerror})") from None


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

    run_dir = Path(run_dir)
    formats, tflite_modes = check_formats(formats), check_tflite_modes(tflite_modes)
    config = load_config(run_dir / "config.yaml")
    if model is None:
        model = _load_run_model(run_dir)
    out = run_dir / "export"
    check_writable(out)
    class_names = read_labels(run_dir / "labels.txt")
    check_label_count(class_names, int(model.output.shape[-1]), run_dir / "labels.txt")
    regression = is_regression(class_names)
    make_dir(out)
    write_labels(out / "labels.txt", class_names)  # for .keras and .tflite
    written, report = {}, {}
    if "saved_model" in formats:
        from keras_transfer.deploy.saved_model import (
            export_saved_model,
            next_version_dir,
        )

        written["saved_model"] = export_saved_model(model, next_version_dir(out / "saved_model"), class_names,
                                                    resize=config.data.resize)
        report["saved_model"] = {"path": str(written["saved_model"])}
        log(f"SavedModel: {written['saved_model']} (signatures serving_default, serve_bytes)")
    if "keras" in formats:
        from keras_transfer.deploy.inference import export_keras

        written["keras"] = export_keras(model, out / "model.keras")
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
    if (run_dir / "report.html").is_file():  # the run's page shows the export parity too
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


def _load_run_model(run_dir: Path):
    import keras

    from keras_transfer import register_serializables

    register_serializables()

    if not (run_dir / "model.keras").is_file():
        raise FileNotFoundError(f"{run_dir} has no model.keras: is it a finished keras_transfer run?")
    from keras_transfer.core.archives import check_keras_archive

    check_keras_archive(run_dir / "model.keras")  # member sizes, before Keras inflates any
    return keras.saving.load_model(run_dir / "model.keras", safe_mode=True)


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
