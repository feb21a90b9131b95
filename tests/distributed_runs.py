"""Runs that need a fresh TensorFlow process: logical CPU devices are fixed at startup.

    python -m tests.distributed_runs mirrored OUT_DIR

trains the same tiny two-stage config with the default strategy (global batch 80) and with
MirroredStrategy over two logical CPUs (40 per replica, global 80) and prints one JSON line:
replicas, how far training moved the weights, and how far the two runs' weights differ. The
batch is the whole training set, so the comparison does not depend on the order in which each
strategy's input pipeline draws shuffled batches (which tf.distribute does not keep).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def mirrored(out: Path) -> dict:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    import keras
    import numpy as np

    from keras_transfer.config import from_dict
    from keras_transfer.data import load_data
    from keras_transfer.training import build_model, run
    from tests.support import tiny_config

    stages = [{"name": "head", "train": "head", "epochs": 3, "learning_rate": 0.01},
              {"name": "all", "train": "all", "epochs": 3, "learning_rate": 0.5, "optimizer": "sgd"}]
    results, lines = {}, []
    for strategy, batch in (("default", 80), ("mirrored", 40)):
        raw = tiny_config(out, stages, few_shot=8, batch_size=batch)
        raw["training"]["strategy"] = strategy
        results[strategy] = run(from_dict(raw), out / strategy, log=lines.append)
    config = from_dict(raw)
    keras.utils.set_random_seed(config.training.seed)
    initial = build_model(config, load_data(config.data)).get_weights()
    trained = [r.model.get_weights() for r in results.values()]
    return {"moved": max(float(np.abs(a - b).max()) for a, b in zip(trained[0], initial)),
            "max_weight_diff": max(float(np.abs(a - b).max()) for a, b in zip(*trained)),
            "epochs": len(json.loads((out / "mirrored" / "history.json").read_text())),
            "strategy_line": next((line for line in lines if line.startswith("strategy:")), "")}


if __name__ == "__main__":
    mode, out = sys.argv[1], Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    print("RESULT " + json.dumps({"mirrored": mirrored}[mode](out)))
