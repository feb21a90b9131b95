"""External classifiers on frozen features: logistic regression, linear SVM, k-nearest neighbours.

The protocol is Kornblith et al.'s linear probe (CVPR 2019): standardised features, no
augmentation, L2-regularised multinomial logistic regression fitted with L-BFGS, and C chosen
over a log grid on held-out data. Here the choice is made on the validation split when there is
one, else by stratified k-fold cross-validation on train; the final classifier is fitted on train
only, as the Keras heads are, so the two compare on equal data (Kornblith et al. refit on
train + validation). A fitted linear classifier becomes one Dense layer on the backbone
(`classifier_model`), so feature extraction ends in the same kind of Keras model as fine-tuning. The
linear SVM is LinearSVC's objective solved with L-BFGS along the C path (`svm.py`), so its
search over C costs about what logistic regression's does.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import keras
import numpy as np

from keras_transfer.core.names import unknown_name_message
from keras_transfer.features.svm import SquaredHingeSVC
from keras_transfer.core.layers import MultiView, NearestNeighbours, ViewMean

CLASSIFIERS = ("logistic", "linear_svm", "knn")
SCALINGS = ("features", "global")
# Kornblith et al. searched 45 values of C from 1e-6 to 1e5; nine decades cover the optimum on
# standardised features at a fifth of the cost.
C_GRID = tuple(float(c) for c in np.logspace(-4, 4, 9))
K_GRID = (1, 3, 5, 9, 15)
# L-BFGS's gradient tolerance for the SVM (on its objective / (C N)): at 1e-4 choosing C took 0.3x
# logistic regression's time on synthetic 3,000 x 1,280 features and 1.0-1.2x on flower features
# (benchmarks/bench_svm.py); 1e-5 took 2.4x as long for the same validation accuracies.
SVM_TOLERANCE = 1e-4


@dataclass
class FeatureClassifier:
    """A fitted external classifier: standardisation, the scikit-learn estimator, the choice made.

    `selection` lists (hyper-parameter value, held-out accuracy) for every candidate tried.
    `predict_proba` returns one column per class of the data, even for classes the estimator
    never saw; for the linear SVM the columns are a softmax of the margins (scores, not
    calibrated probabilities), which keeps the arg-max.
    """

    kind: str
    num_classes: int
    mean: np.ndarray
    scale: np.ndarray
    estimator: Any
    chosen: dict[str, float]
    selection: list[tuple[float, float]] = field(default_factory=list)
    selected_on: str = "none"
    references: tuple[np.ndarray, np.ndarray] | None = None  # kNN: standardised training features, labels

    def standardise(self, x: np.ndarray) -> np.ndarray:
        """Features standardised with the training set's mean and scale."""
        return (np.asarray(x, dtype=np.float64) - self.mean) / self.scale

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class scores summing to one per row, shape [N, num_classes]."""
        z = self.standardise(x)
        classes = self.estimator.classes_
        if self.kind == "knn":
            shares = np.zeros((len(z), self.num_classes))
            shares[:, classes] = self.estimator.predict_proba(z)
            return shares
        logits = np.full((len(z), self.num_classes), -np.inf)
        logits[:, classes] = _linear_logits(self.estimator, z)
        scores = np.exp(logits - logits.max(axis=1, keepdims=True))
        return scores / scores.sum(axis=1, keepdims=True)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The predicted class index of each row."""
        return self.predict_proba(x).argmax(axis=1)

    def score(self, x: np.ndarray, y: np.ndarray) -> float:
        """Accuracy on (x, y)."""
        return float((self.predict(x) == np.asarray(y).reshape(-1)).mean())


def fit_classifier(
    kind: str,
    x: np.ndarray,
    y: np.ndarray,
    *,
    num_classes: int | None = None,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    grid: tuple[float, ...] | None = None,
    seed: int = 0,
    scaling: str = "features",
    class_weight: str | None = None,
) -> FeatureClassifier:
    """Fit a `kind` classifier ("logistic", "linear_svm" or "knn") on features `x`, labels `y`.

    The regularisation C (or kNN's k) is chosen from `grid` (default `C_GRID` / `K_GRID`; one
    value is taken as given) by accuracy on `validation` when given, else by stratified k-fold cross-validation on (x, y)
    (k = min(5, smallest class count); with one example of some class, no choice is made and
    the grid's middle value is used). Labels are integer class indices. `scaling` is how features
    are normalised first: `features` standardises each (Kornblith et al.), `global` centres them and
    divides by one scale, better on small sets (`selection.global_scale`). `class_weight="balanced"`
    weights logistic regression's loss by n / (classes x count) (what `data.balance` gives a Keras
    head); the linear SVM and kNN take no weights.
    """
    if kind not in CLASSIFIERS:
        raise ValueError(unknown_name_message("classifier", kind, CLASSIFIERS))
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{kind} needs one integer class per example (multiclass labels), got labels of "
                         f"shape {y.shape} and type {y.dtype}")
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"features must be [N, D] with one label each; got {x.shape} and {len(y)} labels")
    if len(np.unique(y)) < 2:
        raise ValueError(f"{kind} needs at least two classes in the training labels")
    num_classes = int(num_classes or y.max() + 1)
    if scaling not in SCALINGS:
        raise ValueError(unknown_name_message("scaling", scaling, SCALINGS))
    scaler = StandardScaler().fit(x)
    if scaling == "global":
        from keras_transfer.features.selection import global_scale

        scale = np.full(x.shape[1], global_scale(x))
    else:
        scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    z = (x - scaler.mean_) / scale
    grid = tuple(grid or (K_GRID if kind == "knn" else C_GRID))
    if kind == "knn":
        grid = tuple(k for k in grid if k <= len(z)) or (1,)

    selection, selected_on, path = [], "none", {}
    if len(grid) == 1:
        selected_on = "given"
    elif validation is not None and len(validation[1]):
        zv = (np.asarray(validation[0], dtype=np.float64) - scaler.mean_) / scale
        selection = _select(kind, grid, [(z, y, zv, np.asarray(validation[1]).reshape(-1))], seed, path, class_weight)
        selected_on = "validation split"
    else:
        folds = min(5, int(np.bincount(y)[np.unique(y)].min()))
        if folds >= 2:
            from sklearn.model_selection import StratifiedKFold

            splits = StratifiedKFold(folds, shuffle=True, random_state=seed).split(z, y)
            selection = _select(kind, grid, [(z[a], y[a], z[b], y[b]) for a, b in splits], seed, path, class_weight)
            selected_on = f"{folds}-fold cross-validation"
    value = max(selection, key=lambda pair: pair[1])[0] if selection else grid[len(grid) // 2]
    estimator = _fit(kind, value, z, y, seed, init=path.get(value), class_weight=class_weight)
    chosen = {"n_neighbors" if kind == "knn" else "C": value}
    return FeatureClassifier(kind, num_classes, scaler.mean_, scale, estimator, chosen, selection, selected_on,
                             references=(z, y) if kind == "knn" else None)


def _select(kind, grid, folds, seed, path: dict, class_weight=None) -> list[tuple[float, float]]:
    """Mean held-out accuracy of each grid value; ties go to the first (most regularised) value.

    The linear SVM walks each fold's C path from small to large, each fit starting from the
    previous solution (a few dozen L-BFGS steps instead of hundreds); `path` keeps the last
    fold's solution per C, from which the final fit starts.
    """
    accuracy: dict[float, list[float]] = {value: [] for value in grid}
    for zt, yt, zv, yv in folds:
        previous = None
        for value in (sorted(grid) if kind == "linear_svm" else grid):
            estimator = _fit(kind, value, zt, yt, seed, init=previous, class_weight=class_weight)
            if kind == "linear_svm":
                previous = path[value] = estimator.solution()
            accuracy[value].append(float((estimator.predict(zv) == yv).mean()))
    return [(value, float(np.mean(accuracy[value]))) for value in grid]


def _fit(kind: str, value: float, z: np.ndarray, y: np.ndarray, seed: int, init: np.ndarray | None = None,
         class_weight: str | None = None):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier

    if kind == "knn":
        return KNeighborsClassifier(n_neighbors=int(min(value, len(z)))).fit(z, y)
    if kind == "linear_svm":
        return SquaredHingeSVC(C=value, max_iter=1000, tol=SVM_TOLERANCE).fit(z, y, init=init)
    estimator = LogisticRegression(C=value, solver="lbfgs", max_iter=1000, class_weight=class_weight)
    with warnings.catch_warnings():
        # A weakly regularised fit on separable features never "converges"; its accuracy decides.
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(z, y)


def _linear_logits(estimator, z: np.ndarray) -> np.ndarray:
    """Logits over the estimator's classes; a binary estimator's one margin becomes [0, margin]."""
    coef, intercept = linear_weights(estimator)
    return z @ coef + intercept


def linear_weights(estimator) -> tuple[np.ndarray, np.ndarray]:
    """(kernel [D, C], bias [C]) of a fitted linear estimator over its `classes_`, softmax-ready."""
    coef, intercept = estimator.coef_, estimator.intercept_
    if coef.shape[0] == 1 and len(estimator.classes_) == 2:
        coef = np.concatenate([np.zeros_like(coef), coef])
        intercept = np.concatenate([[0.0], intercept])
    return coef.T, intercept


def classifier_model(backbone: keras.Model, classifier: FeatureClassifier, layer: str | Sequence[str] | None = None,
                     pooling: str = "avg", views: Sequence[str] = ("full",)) -> keras.Model:
    """The backbone (up to `layer`, default its output) and `classifier` as one Keras model on raw pixels.

    `layer` may list several Keras layers, whose pooled outputs are concatenated in that order;
    with several `views` the model stacks the views of each image (`MultiView`), runs the backbone
    on all of them and averages their features (`ViewMean`) before the classifier, as the
    classifier was fitted. The standardisation folds into the weights: a linear classifier
    becomes one softmax Dense layer `head_predictions`, kNN a `NearestNeighbours` layer holding
    its standardised training features. The result saves, exports and serves like any toolkit
    classifier.
    """
    names = [layer] if isinstance(layer, str) else list(layer or [])
    pool = {"avg": keras.layers.GlobalAveragePooling2D, "max": keras.layers.GlobalMaxPooling2D}[pooling]
    if tuple(views) == ("full",) and len(names) <= 1:
        inputs = backbone.input
        x = backbone.get_layer(names[0]).output if names else backbone.output
        if len(x.shape) == 4:
            x = pool(name="head_pool")(x)
    else:
        pooled = [backbone.get_layer(name).output for name in names] or [backbone.output]
        pooled = [pool(name=f"head_pool_{i}")(x) if len(x.shape) == 4 else x for i, x in enumerate(pooled)]
        x = pooled[0] if len(pooled) == 1 else keras.layers.Concatenate(name="head_concat")(pooled)
        if tuple(views) == ("full",):
            inputs = backbone.input
        else:
            extractor = keras.Model(backbone.input, x, name=f"{backbone.name}_features")
            inputs = keras.Input(tuple(backbone.input.shape[1:]), name="images")
            x = ViewMean(len(views), name="head_view_mean")(extractor(MultiView(views, name="views")(inputs)))
    if classifier.kind == "knn":
        points, labels = classifier.references
        head = NearestNeighbours.from_points(points, labels, classifier.num_classes,
                                             int(classifier.estimator.n_neighbors), classifier.mean, classifier.scale)
    else:
        kernel = np.zeros((len(classifier.mean), classifier.num_classes))
        bias = np.full(classifier.num_classes, -1e9)  # a class absent from training is never predicted
        w, b = linear_weights(classifier.estimator)
        classes = classifier.estimator.classes_
        kernel[:, classes] = w / classifier.scale[:, None]
        bias[classes] = b - (classifier.mean / classifier.scale) @ w
        head = keras.layers.Dense(classifier.num_classes, activation="softmax", dtype="float32",
                                  name="head_predictions")
        head.build((None, len(classifier.mean)))
        head.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    return keras.Model(inputs, head(x), name=f"{backbone.name}_classifier")

