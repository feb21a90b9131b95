"""Solution II from a config: frozen backbone features, an external classifier, one Keras model.

`python -m keras_transfer.train` calls `run_feature_classifier` when `model.head.type` is
`logistic`, `linear_svm` or `knn`. The run directory has the same files as a staged run
(config.yaml, labels.txt, data_report.json, metrics.json, plots/, model.keras) plus
`classifier.json` with the chosen C (or k) and the held-out accuracy of every candidate, so
both solutions are exported, evaluated and served the same way.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import keras

from keras_transfer.config import RunConfig
from keras_transfer.features.classifiers import classifier_model, fit_classifier
from keras_transfer.features.extract import backbone_and_data, extract_features
from keras_transfer.training import RunResult, start_run_dir, write_results
from keras_transfer.files import atomic_write_text, claimed_folder
from keras_transfer.training.report import classification_metrics


def run_feature_classifier(config: RunConfig, run_dir: str | Path, *, log: Callable[[str], None] = print,
                           cache_dir: str | Path | None = None) -> RunResult:
    """Train `config.model.head.type` on frozen features of the configured backbone into `run_dir`.

    The backbone is built (and cut at `model.cut_at`) from the config; its pooled features are
    extracted once per split (and cached); the classifier's C or k is chosen on the validation
    split; validation and test are scored with the same metrics as a Keras head; and the
    backbone plus classifier are saved as one `model.keras`. `training.stages` are not used.
    """
    run_dir = Path(run_dir)
    with claimed_folder(run_dir):  # one run per folder at a time
        return _run(config, run_dir, log, cache_dir)


def _run(config: RunConfig, run_dir: Path, log: Callable[[str], None], cache_dir) -> RunResult:
    keras.utils.set_random_seed(config.training.seed)
    m, kind = config.model, config.model.head.type
    backbone, data = backbone_and_data(config, purpose=f"model.head.type: {kind}")
    start_run_dir(config, run_dir, data, log)
    log(f"Solution II: {kind} on frozen {backbone.name} features ({backbone.layers[-1].name}, "
        f"{m.head.pooling} pooled); training.stages are not used")
    features = extract_features(backbone, data, pooling=m.head.pooling, cache_dir=cache_dir, log=log)
    validation = features.xy("val") if "val" in features.splits else None
    started = time.perf_counter()
    x, y = features.xy("train")
    weighted = data.class_weight is not None and kind == "logistic"
    if data.class_weight is not None and not weighted:
        log(f"data.balance came to class_weight, which {kind} does not take: its classes are not weighted")
    classifier = fit_classifier(kind, x, y, num_classes=data.num_classes, validation=validation,
                                seed=config.training.seed, class_weight="balanced" if weighted else None)
    seconds = time.perf_counter() - started
    (name, value), = classifier.chosen.items()
    log(f"{kind}: {name} = {value:g} chosen on the {classifier.selected_on} ({seconds:.1f} s)")

    metrics = {}
    for split in ("val", "test"):
        if split in features.splits:
            xs, ys = features.xy(split)
            metrics[split] = classification_metrics(classifier.predict_proba(xs), ys, data.class_names, "multiclass")
    model = classifier_model(backbone, classifier, pooling=m.head.pooling)
    record = {"type": kind, "chosen": classifier.chosen, "selected_on": classifier.selected_on,
              "selection": [{name: v, "accuracy": a} for v, a in classifier.selection],
              "feature_seconds": round(features.seconds, 3), "fit_seconds": round(seconds, 3),
              "feature_dim": int(x.shape[1]), "train_examples": int(len(x)),
              "class_weight": "balanced" if weighted else None}
    atomic_write_text(run_dir / "classifier.json", json.dumps(record, indent=1))
    return write_results(run_dir, model, data, metrics, [], log)

