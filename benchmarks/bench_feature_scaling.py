"""Per-feature standardisation against one global scale, for a logistic regression on few images.

Kornblith et al.'s linear-probe protocol standardises every feature, which suits thousands of
images. With 5 per class the per-feature scales are estimated from a handful of values. This
benchmark draws 5 photos per class from flowers5 and from eurosat5's `train/` (3 seeds), lets
`load_data` carve val and test as for a user's folder, extracts EfficientNet-Lite0's `top`
features at 224x224 on 1 and 4 fixed views, fits a logistic regression on train (C by the
toolkit's cross-validation for each scaling) and scores it on an external test set (60 images per
class: flowers5 photos held out from every pool, eurosat5's `test/`).

    python benchmarks/bench_feature_scaling.py [--workdir DIR] [--per-class 5] [--seeds 0,1,2]

Results go to benchmarks/results/feature_scaling.json; the summary prints the difference per run.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared" / "data"
VIEWS = ("full", "flip", "zoom", "flip_zoom")


def _files(domain: str) -> tuple[dict, dict]:
    if domain == "eurosat5":
        train, test = SHARED / "eurosat5" / "train", SHARED / "eurosat5" / "test"
        classes = sorted(p.name for p in train.iterdir())
        return ({c: sorted((train / c).iterdir()) for c in classes},
                {c: sorted((test / c).iterdir())[:60] for c in classes})
    root, pool, test = SHARED / "flowers5", {}, {}
    for c in sorted(p.name for p in root.iterdir() if p.is_dir()):
        files = sorted((root / c).iterdir())
        random.Random(123).shuffle(files)
        test[c], pool[c] = files[:60], files[60:]
    return pool, test


def _copy(files: dict, folder: Path, per_class: int | None = None, seed: int = 0) -> Path:
    for name, paths in files.items():
        paths = list(paths)
        if per_class:
            random.Random(seed).shuffle(paths)
            paths = paths[:per_class]
        (folder / name).mkdir(parents=True, exist_ok=True)
        for path in paths:
            if not (folder / name / path.name).exists():
                shutil.copyfile(path, folder / name / path.name)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--per-class", type=int, default=5)
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    from keras_transfer.backbones import build_backbone
    from keras_transfer.data import DataConfig, load_data
    from keras_transfer.features import selection
    from keras_transfer.features.extract import extract_features

    warnings.filterwarnings("ignore")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-scaling-"))
    backbone = build_backbone("efficientnet_lite0", weights="imagenet", input_shape=(224, 224, 3))
    rows = []
    for domain in ("flowers5", "eurosat5"):
        pool, test = _files(domain)
        test_data = load_data(DataConfig(source=f"folder:{_copy(test, work / f'std_test_{domain}')}", image_size=224,
                                         val_split=0, test_split=0, augment=()))
        test_features = extract_features(backbone, test_data, ["top"], views=VIEWS)
        for seed in (int(s) for s in args.seeds.split(",")):
            folder = _copy(pool, work / f"std_pool_{domain}_{args.per_class}_{seed}", args.per_class, seed)
            data = load_data(DataConfig(source=f"folder:{folder}", image_size=224, val_split=0.15, test_split=0.15,
                                        augment=(), seed=seed))
            features = extract_features(backbone, data, ["top"], views=VIEWS)
            for views in (1, 4):
                stacked = features.stacked("train", "top")[:, :views]
                y = features.labels["train"]
                rows_x, rows_y = stacked.reshape(-1, stacked.shape[-1]), np.repeat(y, views)
                test_x, test_y = test_features.stacked("train", "top")[:, :views].mean(axis=1), test_features.labels["train"]
                scores = {}
                for scaling in ("features", "global"):
                    mean = rows_x.mean(axis=0)
                    scale = (selection.global_scale(rows_x) if scaling == "global"
                             else np.where(rows_x.std(axis=0) > 0, rows_x.std(axis=0), 1.0))
                    C = selection.choose_C((stacked - mean) / scale, y, seed=seed).C
                    with threadpool_limits(1):
                        model = LogisticRegression(C=C, max_iter=1000).fit((rows_x - mean) / scale, rows_y)
                    scores[scaling] = float((model.predict((test_x - mean) / scale) == test_y).mean())
                row = {"domain": domain, "seed": seed, "views": views, **scores,
                       "gain": round(100 * (scores["global"] - scores["features"]), 1)}
                rows.append(row)
                print(f"{domain} seed {seed} views {views}: standardised {scores['features']:.3f}, "
                      f"one scale {scores['global']:.3f} ({row['gain']:+.1f} points)", flush=True)
    out = HERE / "results" / "feature_scaling.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1))
    gains = [r["gain"] for r in rows]
    print(f"one scale minus standardised: {min(gains):+.1f} to {max(gains):+.1f} points, median {np.median(gains):+.1f}")


if __name__ == "__main__":
    main()
