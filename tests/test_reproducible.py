"""Same seed, same result: augmentation in the tf.data pipeline draws from (seed, epoch, batch) alone,
so two runs of one config on the same data end with bitwise the same weights; a new epoch and a
new seed draw anew."""

from __future__ import annotations

import numpy as np

from keras_transfer.config import from_dict
from keras_transfer.data import DataConfig, load_data
from keras_transfer.training import run
from tests.support import tiny_config

AUGMENT = {"flip": None, "rotation": 0.2, "zoom": 0.2, "translation": 0.1, "contrast": 0.3, "brightness": 0.2}


def _epochs(seed: int, count: int = 2) -> list[np.ndarray]:
    """`count` passes over an augmented, shuffled training pipeline of 64 digits (4 batches of 16)."""
    data = load_data(DataConfig(source="digits", image_size=16, batch_size=16, val_split=0, test_split=0,
                                augment=AUGMENT, seed=seed, few_shot=7, cache="memory"))
    dataset = data.dataset("train")
    return [np.concatenate([x.numpy() for x, _ in dataset]) for _ in range(count)]


def test_two_pipelines_with_one_seed_augment_bitwise_alike_and_each_epoch_anew():
    first, again = _epochs(seed=3), _epochs(seed=3)
    for epoch, (a, b) in enumerate(zip(first, again)):
        assert np.array_equal(a, b), f"epoch {epoch + 1} augmented differently with the same seed"
    assert not np.array_equal(first[0], first[1]), "the second epoch repeats the first one's draws"
    assert not np.array_equal(first[0], _epochs(seed=4, count=1)[0]), "another seed draws the same"


def test_an_augmented_run_twice_ends_with_bitwise_the_same_weights(tmp_path):
    stages = [{"name": "all", "train": "all", "epochs": 1, "learning_rate": 0.01}]
    config = tiny_config(tmp_path, stages, augment=AUGMENT, few_shot=4, batch_size=16, val_split=0, test_split=0)
    weights = []
    for attempt in ("first", "second"):
        result = run(from_dict(config), tmp_path / attempt, log=lambda _: None)
        weights.append(result.model.get_weights())
    assert len(weights[0]) == len(weights[1]) > 0
    for a, b in zip(*weights):
        assert np.array_equal(a, b), f"weights differ by up to {np.abs(a - b).max():g}"
