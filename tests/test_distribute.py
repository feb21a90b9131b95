"""Training beyond one device: MirroredStrategy and MultiWorkerMirroredStrategy on this CPU machine."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support import tiny_config

ROOT = Path(__file__).resolve().parents[1]
_ENTRY = ["-m", "keras_transfer.train"]


def test_mirrored_over_two_logical_cpus_trains_the_same_weights_as_one_device(tmp_path):
    # Logical devices are fixed when TensorFlow starts, so the comparison runs in its own process.
    done = subprocess.run([sys.executable, "-m", "tests.distributed_runs", "mirrored", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert "mirrored (MirroredStrategy), 2 replicas; batch 40 per replica, global batch 80" in result["strategy_line"]
    assert result["epochs"] == 6
    assert result["moved"] > 1e-2  # training changed the weights...
    assert result["max_weight_diff"] < 1e-4 * result["moved"] * 100  # ...and both strategies alike (< 1%)


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _workers(args: list[str], tmp_path: Path, ports: list[int], timeout: int = 300) -> list[subprocess.CompletedProcess]:
    """Run the train CLI as two workers of one cluster on 127.0.0.1; both are always ended."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    processes = []
    try:
        for index in range(2):
            scratch = tmp_path / f"tmp{index}"
            scratch.mkdir(exist_ok=True)
            env = {**os.environ, "TMPDIR": str(scratch), "KT_DEBUG": "1",
                   "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
            processes.append(subprocess.Popen([sys.executable, *_ENTRY, *args], cwd=ROOT, env=env,
                                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        finished = []
        for process in processes:
            out, err = process.communicate(timeout=timeout)
            finished.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
        return finished
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def test_multi_worker_run_on_two_local_processes_chief_writes_everything_worker_leaves_nothing(tmp_path):
    stages = [{"name": "head", "train": "head", "epochs": 1, "learning_rate": 0.01},
              {"name": "all", "train": "all", "epochs": 1, "learning_rate": 0.001}]
    raw = tiny_config(tmp_path, stages, few_shot=8, batch_size=20)
    raw["training"]["strategy"] = "multi_worker"
    config = tmp_path / "multi.yaml"
    config.write_text(yaml.safe_dump(raw))
    run_dir = tmp_path / "run"
    ports = _free_ports(2)

    chief, worker = _workers(["--config", str(config), "--output-dir", str(run_dir)], tmp_path, ports)
    assert chief.returncode == 0, chief.stderr[-3000:]
    assert worker.returncode == 0, worker.stderr[-3000:]
    assert "multi_worker (CollectiveAllReduceStrategy), 2 replicas; batch 20 per replica, global batch 40" in chief.stdout
    for name in ("config.yaml", "labels.txt", "history.json", "metrics.json", "model.keras", "checkpoints/LATEST"):
        assert (run_dir / name).is_file(), name
    assert [row["stage"] for row in json.loads((run_dir / "history.json").read_text())] == ["head", "all"]
    assert not list((tmp_path / "tmp1").glob("kt-worker-*")), "the worker left its scratch folder behind"
    assert "test accuracy" not in worker.stdout and "Epoch" not in worker.stdout  # one voice: the chief's

    # Resume: every worker restores the chief's last checkpoint, so both agree there is nothing left.
    chief, worker = _workers(["--output-dir", str(run_dir), "--resume"], tmp_path, ports)
    assert chief.returncode == 0 and worker.returncode == 0, chief.stderr[-2000:] + worker.stderr[-2000:]
    assert "resuming from ckpt-0002-2-0" in chief.stdout
    assert len(json.loads((run_dir / "history.json").read_text())) == 2


def test_multi_worker_without_tf_config_or_output_dir_is_a_clear_error(tmp_path, monkeypatch):
    from keras_transfer.training.distribute import make_strategy

    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(RuntimeError, match="TF_CONFIG"):
        make_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(RuntimeError, match="not valid JSON"):
        make_strategy("multi_worker")
    from keras_transfer.config import ConfigError
    from keras_transfer.cli.train import main

    with pytest.raises(ConfigError, match="--output-dir"):
        main(["--set", "training.strategy=multi_worker"])
