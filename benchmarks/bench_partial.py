"""Partial fine-tuning on cached activations against today's stage: time and test accuracy.

The packaged `photos` config's `top` stage (the head plus the top two EfficientNet-Lite0 blocks,
lr 1e-3 halved per block going down, the photos augmentation) runs for a fixed number of epochs
(no early stopping) after a short cached head stage, twice on the same split and seed: on images
(`cache_activations: never`, today's path: the frozen lower blocks run at every step) and on
cached activations (`always`: the frozen prefix runs once per augmented view). The two runs of a
seed are interleaved in one process, their order alternating by seed, so both see the same load
on a shared machine. The stage's time runs from the end of the head stage to the end of the top
stage: the views' forward pass, every epoch with its validation, and the checkpoints.

Cells: `flowers5@100` takes 100 photos per class (a fixed draw), pooled then split 70/15/15 by
the seed; `eurosat5@100` takes 100 tiles per class of its train/ folder (85/15 train/val) and
tests on 100 per class of its test/ folder; `flowers5@all` takes every flower photo. The photos are read where they lie
(../shared/data, linked from a temporary folder, never copied).

    python benchmarks/bench_partial.py [--cells flowers5@100,eurosat5@100] [--seeds 0,1] [--image-size 224] [--epochs 6]
    python benchmarks/bench_partial.py --cells flowers5@all --seeds 0

Results accumulate in benchmarks/results/partial.json (one entry per cell, seed and way).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "partial.json"
DATA = HERE.parents[1] / "shared" / "data"
WAYS = {"images": "never", "activations": "always"}


def _link(source: Path, target: Path, per_class: int | None) -> None:
    """`target/<class>/` holding links to `per_class` photos of each `source/<class>/` (a fixed draw), or all."""
    for folder in sorted(p for p in source.iterdir() if p.is_dir()):
        photos = sorted(p for p in folder.iterdir() if p.is_file())
        if per_class is not None:
            photos = random.Random(0).sample(photos, per_class)
        (target / folder.name).mkdir(parents=True)
        for photo in photos:
            os.symlink(photo, target / folder.name / photo.name)


def _source(cell: str, scratch: Path) -> str:
    name, k = cell.split("@")
    per_class = None if k == "all" else int(k)
    if name == "flowers5":
        if per_class is None:
            return f"folder:{DATA / 'flowers5'}"
        _link(DATA / "flowers5", scratch / cell, per_class)
    else:
        _link(DATA / "eurosat5" / "train", scratch / cell / "train", per_class)
        _link(DATA / "eurosat5" / "test", scratch / cell / "test", per_class)
    return f"folder:{scratch / cell}"


def _config(source: str, seed: int, image_size: int, epochs: int, way: str):
    import yaml

    from keras_transfer.config import from_dict, packaged_config

    raw = yaml.safe_load(packaged_config("photos").read_text())
    raw["data"].update(source=source, image_size=[image_size, image_size], seed=seed)
    head, top = raw["training"]["stages"][:2]
    head.update(epochs=5, cache_features="always", early_stopping=None)
    top.update(epochs=epochs, early_stopping=None, cache_activations=WAYS[way])
    raw["training"].update(seed=seed, recipe="stages", stages=[head, top])
    return from_dict(raw)


def one(source: str, seed: int, image_size: int, epochs: int, way: str) -> dict:
    """One run (cached head, then the top stage the `way` asked); the top stage's seconds and test accuracy."""
    from keras_transfer.training import run

    ends, lines = [], []

    def log(line: str) -> None:
        lines.append(line)
        if "cached activations" in line or line.startswith(("stage ", "test accuracy", "frozen pass")):
            print(f"  {line}", flush=True)

    with tempfile.TemporaryDirectory() as folder:
        result = run(_config(source, seed, image_size, epochs, way), folder,
                     log=log, on_stage_end=lambda *_: ends.append(time.perf_counter()))
    cached = next((line.split("): ", 1)[1] for line in lines if ": cached activations of" in line), None)
    return {"seconds": round(ends[1] - ends[0], 1), "test_accuracy": result.metrics["test"]["accuracy"],
            "test_images": result.metrics["test"]["examples"], "cached": cached}


def _load() -> list[dict]:
    return json.loads(RESULTS.read_text()) if RESULTS.is_file() else []


def _save(entries: list[dict]) -> None:
    from keras_transfer.core.files import atomic_write_text

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(RESULTS, json.dumps(entries, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", default="flowers5@100,eurosat5@100")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        for cell in args.cells.split(","):
            source = _source(cell, Path(scratch))
            for seed in seeds:
                ways = list(WAYS) if seed % 2 == 0 else list(WAYS)[::-1]  # alternate who runs first
                for way in ways:
                    print(f"{cell} seed {seed}: top stage on {way}", flush=True)
                    row = {"cell": cell, "seed": seed, "image_size": args.image_size, "epochs": args.epochs,
                           "way": way, **one(source, seed, args.image_size, args.epochs, way)}
                    print(f"  -> {row['seconds']} s, test accuracy {row['test_accuracy']:.4f}", flush=True)
                    entries = [e for e in _load() if (e["cell"], e["seed"], e["image_size"], e["epochs"], e["way"])
                               != (cell, seed, args.image_size, args.epochs, way)]
                    _save(entries + [row])
    print(f"done in {time.perf_counter() - started:.0f} s")
    report()


def report() -> None:
    """One line per cell: each way's mean seconds and test accuracy over its seeds, and the speed-up."""
    import numpy as np

    rows: dict = {}
    for e in _load():
        rows.setdefault((e["cell"], e["image_size"], e["epochs"]), {}).setdefault(e["way"], []).append(e)
    for (cell, size, epochs), ways in sorted(rows.items()):
        if set(ways) != set(WAYS):
            continue
        mean = {w: (np.mean([e["seconds"] for e in es]), np.mean([e["test_accuracy"] for e in es]), len(es))
                for w, es in ways.items()}
        (ti, ai, n), (ta, aa, _) = mean["images"], mean["activations"]
        print(f"{cell} {size}px {epochs} epochs, {n} seed(s): images {ti:.0f} s acc {ai:.4f}; "
              f"activations {ta:.0f} s acc {aa:.4f}; {ti / ta:.2f}x faster")


if __name__ == "__main__":
    main()
