"""The CNN as a frozen feature extractor (feature extraction, linear probes): cached features, external classifiers,
the layer probe and the strategy advisor."""

from keras_transfer.features.classifiers import (
    CLASSIFIERS,
    FeatureClassifier,
    classifier_model,
    fit_classifier,
)
from keras_transfer.features.advisor import decide, measure_data, resolve_recipe
from keras_transfer.features.extract import Features, extract_features, feature_layers, feature_model
from keras_transfer.features.solution import run_feature_classifier

__all__ = [
    "CLASSIFIERS",
    "FeatureClassifier",
    "Features",
    "classifier_model",
    "decide",
    "extract_features",
    "feature_layers",
    "feature_model",
    "fit_classifier",
    "measure_data",
    "resolve_recipe",
    "run_feature_classifier",
]
