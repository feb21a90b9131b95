"""Feature extraction from a config: frozen backbone features, an external classifier, one Keras model.

`keras-transfer train` calls `run_feature_classifier` when `model.head.type` is
`logistic`, `linear_svm` or `knn` (feature extraction). The run directory has the same files as a staged run
(config.yaml, labels.txt, data_report.json, metrics.json, plots/, model.keras) plus
`classifier.json` with the chosen C (or k) and the held-out accuracy of every candidate, so
both solutions are exported, evaluated and served the same way.

With `data.unlabeled`, `model.adapt: adabn` fits the classifier on features normalised with the
labelled images' BatchNorm statistics and exports (and scores) the model with the unlabelled
target's; `model.adapt: feature_stats` standardises the features with the unlabelled images'
own statistics (`keras_transfer.features.align`); `training.self_training` pseudo-labels the
unlabelled features round by round (`keras_transfer.features.self_training`), and
classifier.json lists every round.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import keras
import numpy as np

from keras_transfer.config import RunConfig
from keras_transfer.features.classifiers import classifier_model, fit_classifier
from keras_transfer.data.unlabeled import describe, load_unlabeled
from keras_transfer.features.extract import backbone_and_data, extract_features, feature_layers
from keras_transfer.features.selection import choose_C, held_in
from keras_transfer.features.align import feature_alignment
from keras_transfer.features.self_training import self_train
from keras_transfer.training import RunResult, start_run_dir, write_results
from keras_transfer.core.files import atomic_write_text, claimed_folder
from keras_transfer.training.adapt import adapt_batchnorm, adapt_before_fit
from keras_transfer.metrics import classification_metrics


def run_feature_classifier(config: RunConfig, run_dir: str | Path, *, log: Callable[[str], None] = print,
                           cache_dir: str | Path | None = None) -> RunResult:
    """Train `config.model.head.type` on frozen features of the configured backbone into `run_dir`.

    The backbone is built (and cut at `model.cut_at`) from the config; its pooled features are
    extracted once per split and view (and cached); logistic regression's C is chosen by
    cross-validation (`selection.choose_C`), the SVM's C and kNN's k on the validation split;
    the held-out splits are scored with the same metrics as a Keras head; and the
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
    unlabeled = load_unlabeled(config.data, data.class_names) if m.adapt != "none" or st is not None else None
    start_run_dir(config, run_dir, data, log)
    resolved = feature_layers(backbone, list(m.head.layers) or None)
    views = tuple(m.head.views)
    log(f"feature extraction: {kind} on frozen {backbone.name} features ({', '.join(resolved)}, {m.head.pooling} "
        f"pooled{', views ' + ', '.join(views) if len(views) > 1 else ''}); training.stages are not used")
    if unlabeled is not None:
        log(describe(unlabeled))
    if adabn:  # the classifier learns on labelled features normalised with their own statistics
        adapt_before_fit(backbone, data.dataset("train", training=False), len(data.splits["train"]),
                         unlabeled.dataset(), log=log)
    with data.reading():  # a photo deleted since the start-up check: one line naming it
        features = extract_features(backbone, data, list(resolved), pooling=m.head.pooling, views=views,
                                    cache_dir=cache_dir, log=log)
    started = time.perf_counter()
    record: dict = {}
    labelled = held_in(features.splits)
    # Logistic regression is scored by cross-validation over train and val, so with a test split
    # to hold out it also fits on both (at 5 images per class, 3-5 points of test accuracy);
    # without one, val stays out of the choice and the fit and is the held-out score.
    fit_on = labelled if kind == "logistic" else ["train"]
    # The SVM and kNN choose by their own validation, which must not see one image's views on both
    # sides: they fit on each image's mean over its views, what the model predicts on.
    per_view = kind == "logistic"
    pairs = [features.joined(s, resolved, views=per_view) for s in fit_on]
    x, y = np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])
    weighted = data.class_weight is not None and kind == "logistic"
    if data.class_weight is not None and not weighted:
        log(f"data.balance came to class_weight, which {kind} does not take: its classes are not weighted")
    grid, selected_on, scaling, cv = None, None, "features", None
    if kind == "logistic":
        stacked = np.concatenate([features.joined_stacked(s, resolved) for s in labelled])
        cv = choose_C(stacked, np.concatenate([features.labels[s] for s in labelled]), seed=config.training.seed,
                      class_weight="balanced" if weighted else None,
                      **({"grid": (float(m.head.C),)} if m.head.C is not None else {}))
        grid, scaling = (cv.C,), "global"
        selected_on = ("value in model.head.C (the config's, or recipe auto's cross-validated choice above)" if m.head.C is not None else
                       f"{len(cv.folds)}-fold cross-validation (log-loss, one standard error to the smaller C) "
                       f"on {len(stacked)} images" if cv.folds else "the default: too few images per class for folds")
        record["cross_validation"] = cv.grid
    elif m.head.C is not None:
        grid, selected_on = (float(m.head.C),), "value given in model.head.C"
    validation = features.joined("val", resolved) if "val" in features.splits and grid is None else None
    classifier = fit_classifier(kind, x, y, num_classes=data.num_classes, validation=validation, grid=grid,
                                seed=config.training.seed, scaling=scaling,
                                class_weight="balanced" if weighted else None)
    classifier.selected_on = selected_on or classifier.selected_on
    seconds = time.perf_counter() - started
    (name, value), = classifier.chosen.items()
    log(f"{kind}: {name} = {value:g} chosen on the {classifier.selected_on}, fitted on {' and '.join(fit_on)} "
        f"({seconds:.1f} s)")
    scored = features
    if adabn:  # the exported model, and so its scores, normalise with the target's statistics
        adapt_batchnorm(backbone, unlabeled.dataset(), log=lambda line: log(f"{line} (target: {unlabeled.source})"))
        scored = extract_features(backbone, data, list(resolved), pooling=m.head.pooling, views=views,
                                  splits=[s for s in ("val", "test") if s in data.splits], cache_dir=cache_dir, log=log)
    rounds, alignment = [], None
    if st is not None or m.adapt == "feature_stats":
        pool = extract_features(backbone, unlabeled.bundle, list(resolved), pooling=m.head.pooling, views=views,
                                cache_dir=cache_dir, log=log)  # a large pool is a long pass: its progress shows
        xu = pool.joined("train", resolved)[0]
        if m.adapt == "feature_stats":
            # The unlabelled features are mapped onto the labelled ones' statistics; self-training
            # then fits in that space, and the classifier is folded back to take raw target features.
            alignment = feature_alignment(x, xu)
            log(f"feature statistics: {len(xu):,} unlabelled images ({unlabeled.source}) sit {alignment.shift():.2f} "
                "labelled standard deviations from the labelled images, feature by feature on average; the "
                "classifier standardises with theirs")
            xu = alignment.to_source(xu)
        if st is not None:
            classifier, rounds = self_train(kind, x, y, xu, num_classes=data.num_classes, rounds=st.rounds,
                                            threshold=st.threshold, share=st.share, validation=validation,
                                            seed=config.training.seed, classifier=classifier, score=unlabeled.score,
                                            log=log, scaling=scaling)
        if alignment is not None:
            alignment.retarget(classifier)

    metrics = {}
    if cv is not None and cv.folds:
        metrics["cross_validation"] = {"accuracy": cv.accuracy, "accuracy_sem": cv.sem, "folds": len(cv.folds),
                                       "examples": int(sum(len(features.labels[s]) for s in labelled))}
    for split in ("val", "test"):
        if split in scored.splits and split not in fit_on:
            xs, ys = scored.joined(split, resolved)
            metrics[split] = classification_metrics(classifier.predict_proba(xs), ys, data.class_names, "multiclass")
    model = classifier_model(backbone, classifier, list(resolved.values()) if m.head.layers else None,
                             pooling=m.head.pooling, views=views)
    record.update({"type": kind, "layers": list(resolved), "views": list(views), "chosen": classifier.chosen,
                   "selected_on": classifier.selected_on,
                   "selection": [{name: v, "accuracy": a} for v, a in classifier.selection],
                   "feature_seconds": round(features.seconds, 3), "fit_seconds": round(seconds, 3),
                   "feature_dim": int(x.shape[1]), "fitted_on": fit_on,
                   "train_examples": int(sum(len(features.labels[s]) for s in fit_on)),
                   "class_weight": "balanced" if weighted else None, "adapt": m.adapt,
                   **({"feature_shift": round(alignment.shift(), 4)} if alignment is not None else {}),
                   **({"self_training": [r.as_dict() for r in rounds]} if st is not None else {})})
    atomic_write_text(run_dir / "classifier.json", json.dumps(record, indent=1))
    return write_results(run_dir, model, data, metrics, [], log)
