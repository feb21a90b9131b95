"""Solution II from a config: frozen backbone features, an external classifier, one Keras model.

`python -m keras_transfer.train` calls `run_feature_classifier` when `model.head.type` is
`logistic`, `linear_svm` or `knn`. The run directory has the same files as a staged run
(config.yaml, labels.txt, data_report.json, metrics.json, plots/, model.keras) plus
`classifier.json` with the chosen C (or k) and the held-out accuracy of every candidate, so
both solutions are exported, evaluated and served the same way.

With `data.unlabeled`, `model.adapt: adabn` fits the classifier on features normalised with the
labelled images' BatchNorm statistics and exports (and scores) the model with the unlabelled
target's; `training.self_training` pseudo-labels the unlabelled features round by round
(`keras_transfer.features.self_training`), and classifier.json lists every round.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import keras

from keras_transfer.config import RunConfig
from keras_transfer.features.classifiers import classifier_model, fit_classifier
from keras_transfer.data.unlabeled import describe, load_unlabeled
from keras_transfer.features.extract import backbone_and_data, extract_features
from keras_transfer.features.self_training import self_train
from keras_transfer.training import RunResult, start_run_dir, write_results
from keras_transfer.files import atomic_write_text, claimed_folder
from keras_transfer.training.adapt import adapt_batchnorm, adapt_before_fit
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
    adabn, st = m.adapt == "adabn", config.training.self_training
    unlabeled = load_unlabeled(config.data, data.class_names) if adabn or st is not None else None
    start_run_dir(config, run_dir, data, log)
    log(f"Solution II: {kind} on frozen {backbone.name} features ({backbone.layers[-1].name}, "
        f"{m.head.pooling} pooled); training.stages are not used")
    if unlabeled is not None:
        log(describe(unlabeled))
    if adabn:  # the classifier learns on labelled features normalised with their own statistics
        adapt_before_fit(backbone, data.dataset("train", training=False), len(data.splits["train"]),
                         unlabeled.dataset(), log=log)
    features = extract_features(backbone, data, pooling=m.head.pooling, cache_dir=cache_dir, log=log)
    validation = features.xy("val") if "val" in features.splits else None
    started = time.perf_counter()
    x, y = features.xy("train")
    classifier = fit_classifier(kind, x, y, num_classes=data.num_classes, validation=validation,
                                seed=config.training.seed)
    seconds = time.perf_counter() - started
    (name, value), = classifier.chosen.items()
    log(f"{kind}: {name} = {value:g} chosen on the {classifier.selected_on} ({seconds:.1f} s)")
    scored = features
    if adabn:  # the exported model, and so its scores, normalise with the target's statistics
        adapt_batchnorm(backbone, unlabeled.dataset(), log=lambda line: log(f"{line} (target: {unlabeled.source})"))
        scored = extract_features(backbone, data, pooling=m.head.pooling, splits=[s for s in ("val", "test")
                                  if s in data.splits], cache_dir=cache_dir, log=log)
    rounds = []
    if st is not None:
        xu = extract_features(backbone, unlabeled.bundle, pooling=m.head.pooling, cache_dir=cache_dir).xy("train")[0]
        classifier, rounds = self_train(kind, x, y, xu, num_classes=data.num_classes, rounds=st.rounds,
                                        threshold=st.threshold, validation=validation, seed=config.training.seed,
                                        classifier=classifier, score=unlabeled.score, log=log)

    metrics = {}
    for split in ("val", "test"):
        if split in scored.splits:
            xs, ys = scored.xy(split)
            metrics[split] = classification_metrics(classifier.predict_proba(xs), ys, data.class_names, "multiclass")
    model = classifier_model(backbone, classifier, pooling=m.head.pooling)
    record = {"type": kind, "chosen": classifier.chosen, "selected_on": classifier.selected_on,
              "selection": [{name: v, "accuracy": a} for v, a in classifier.selection],
              "feature_seconds": round(features.seconds, 3), "fit_seconds": round(seconds, 3),
              "feature_dim": int(x.shape[1]), "train_examples": int(len(x)), "adapt": m.adapt,
              **({"self_training": [r.as_dict() for r in rounds]} if st is not None else {})}
    atomic_write_text(run_dir / "classifier.json", json.dumps(record, indent=1))
    return write_results(run_dir, model, data, metrics, [], log)

