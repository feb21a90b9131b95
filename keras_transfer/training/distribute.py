"""Which devices a run trains on: TensorFlow's distribution strategies, chosen by the config.

The toolkit does not distribute anything itself. `make_strategy` maps `training.strategy` to a
`tf.distribute` strategy; the engine builds, compiles and fits inside its scope, batches the data
with the global batch (per-replica batch x replicas), and lets only the chief write the run
directory (`Placement`). Other workers write to a private temporary folder, removed at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import keras

from keras_transfer.config import STRATEGIES


_MADE: dict[tuple, object] = {}


def make_strategy(name: str):
    """The `tf.distribute.Strategy` for `name` (see `STRATEGIES`).

    `auto`: MirroredStrategy over the visible GPUs when there are two or more, else the default
    strategy. `mirrored`: all visible GPUs, or all logical CPU devices when there is no GPU (how
    it is tested on one machine). `multi_worker`: MultiWorkerMirroredStrategy, with the cluster
    read from the `TF_CONFIG` environment variable. `tpu`: the TPU found by TPUClusterResolver.
    """
    import tensorflow as tf

    if name == "multi_worker":
        # First, before anything initialises TensorFlow's context: collectives are set up at startup.
        cluster_spec()  # a clear error before TensorFlow's own
        if "multi_worker" not in _MADE:
            _MADE["multi_worker"] = tf.distribute.MultiWorkerMirroredStrategy()
        return _MADE["multi_worker"]
    gpus = tf.config.list_logical_devices("GPU")
    if name == "default" or (name == "auto" and len(gpus) < 2):
        return tf.distribute.get_strategy()
    if name in ("auto", "mirrored"):
        devices = tuple(d.name for d in gpus) or tuple(d.name for d in tf.config.list_logical_devices("CPU"))
        # One strategy per device set and process: a second MirroredStrategy over the same devices
        # reuses collective instance keys and fails on the next model with "shape mismatch".
        if ("mirrored", devices) not in _MADE:
            _MADE[("mirrored", devices)] = tf.distribute.MirroredStrategy(devices=list(devices))
        return _MADE[("mirrored", devices)]
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, RuntimeError, tf.errors.OpError) as error:
            raise RuntimeError(f"training.strategy: tpu, but no TPU was found ({str(error).splitlines()[0]}); "
                               "run on a TPU VM or set TPU_NAME, or use strategy auto") from None
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"unknown training.strategy {name!r}; choose one of {', '.join(STRATEGIES)}")


def cluster_spec() -> dict:
    """The parsed `TF_CONFIG` of a multi-worker run, checked for the keys TensorFlow needs."""
    text = os.environ.get("TF_CONFIG")
    if not text:
        raise RuntimeError("training.strategy: multi_worker needs the TF_CONFIG environment variable, e.g. "
                           '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", '
                           '"index": 0}} (docs/distributed.md)')
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as error:
        raise RuntimeError(f"TF_CONFIG is not valid JSON ({error})") from None
    if not isinstance(spec, dict) or "cluster" not in spec or "task" not in spec:
        raise RuntimeError("TF_CONFIG must hold 'cluster' (role -> list of host:port) and 'task' (type, index)")
    return spec


def is_chief(strategy) -> bool:
    """True for the one process that writes: a single-machine run, the `chief`, or worker 0 without one."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and not has_chief


@dataclass
class Placement:
    """Where this process writes (`write_dir`) and reads checkpoints from (`run_dir`).

    The chief writes `run_dir` itself. A non-chief worker writes into a temporary folder that
    `cleanup()` removes, and resumes from the chief's checkpoints in `run_dir` (a shared file
    system, as TensorFlow's own multi-worker fault tolerance assumes).
    """

    run_dir: Path
    write_dir: Path
    chief: bool
    replicas: int

    @classmethod
    def for_strategy(cls, strategy, run_dir: Path) -> "Placement":
        """The placement of this process in `strategy` for a run into `run_dir`."""
        chief = is_chief(strategy)
        write_dir = run_dir if chief else Path(tempfile.mkdtemp(prefix="kt-worker-"))
        return cls(run_dir, write_dir, chief, int(strategy.num_replicas_in_sync))

    def cleanup(self) -> None:
        """Remove a non-chief worker's temporary folder (the chief keeps its run directory)."""
        if not self.chief:
            shutil.rmtree(self.write_dir, ignore_errors=True)


def prepare_for_fit(model, strategy):
    """The model to compile and `fit` under `strategy`: `model` itself, or a twin for multi-worker runs.

    Keras 3.15's `fit` fails under MultiWorkerMirroredStrategy in two places (tensorflow#72388):
    its symbolic build reduces the first (x, y) batch across workers ("Attempt to convert a
    value (PerReplica...)"), and it averages each step's scalar logs across workers along an
    axis 0 they do not have ("Invalid reduction dimension 0"). The twin shares every layer and
    weight of `model`, returns its logs as length-1 vectors so the cross-worker mean has an axis
    to reduce, and records no strategy, so Keras builds it while tracing the train step instead;
    `fit`, called inside `strategy.scope()`, still runs on that strategy.
    """
    import tensorflow as tf

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return model
    twin = _VectorLogs(inputs=model.inputs, outputs=model.outputs, name=model.name)
    twin._distribute_strategy = None
    return twin


def _vectorise(logs):
    return {key: keras.ops.reshape(value, (1,)) for key, value in logs.items()}


class _VectorLogs(keras.Model):
    """A functional model whose train and test steps return logs of shape (1,)."""

    def train_step(self, data):
        return _vectorise(super().train_step(data))

    def test_step(self, data):
        return _vectorise(super().test_step(data))
