"""The data check on real photos: its time, its near-duplicate threshold, and its suspect ranking.

1. `timing`: `keras-transfer check` on all 4,317 flowers5 photos as a user runs it (a
   fresh process, a cold feature cache), then again with the cache warm; the lists it finds.
2. `threshold`: the near-duplicate cosine, measured. 300 photos (60 per class, seeded) each get
   an augmented copy (a random 80-95% crop resized back, a mirror half the time, JPEG re-encoded
   at quality 60-90); the cosine of each photo to its copy is compared with the cosine of each
   photo to its nearest *other* photo of the 4,317 (exact duplicates excluded), for centred
   features (what the check uses) and raw ones. The threshold is chosen between the two.
3. `flips`: 5% of the labels flipped at random (to another class), five seeds, on the flowers
   features and on scikit-learn's digits; how many of the top-N suspects (N = number flipped)
   are flipped ones.

4. `outliers`: three blank frames (white, black, grey) and three digit scans planted among the
   flowers' features: which does the outlier rule flag?

    python benchmarks/bench_check.py [timing|threshold|flips|outliers|all] [--flowers /work/shared/data/flowers5]

Results are merged into benchmarks/results/check.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "check.json"
CACHE = Path(tempfile.gettempdir()) / "bench_check_features"
SIZE = 128


def _save(key: str, value) -> None:
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    results[key] = value
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")


def bench_timing(flowers: Path) -> None:
    import shutil

    shutil.rmtree(CACHE, ignore_errors=True)
    runs = []
    for label in ("cold feature cache", "warm feature cache"):
        with tempfile.TemporaryDirectory() as out:
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "keras_transfer.check", str(flowers), "--output-dir", out,
                                   "--cache-dir", str(CACHE)], capture_output=True, text=True, check=True)
            wall = time.perf_counter() - started
            report = json.loads((Path(out) / "data_health.json").read_text())
        summary = [line for line in done.stdout.splitlines() if not line.startswith("wrote ")][-6:]
        print(f"{label}: {wall:.1f} s wall\n  " + "\n  ".join(summary))
        runs.append({"cache": label, "wall_seconds": round(wall, 1), "inside_seconds": report["seconds"],
                     "summary": summary})
    exact = [{"kind": g["kind"], "files": g["files"]} for g in report["exact_duplicates"]]
    _save("timing", {"command": f"keras-transfer check {flowers}", "images": report["examples"],
                     "cores": os.cpu_count(), "note": "2 cores shared with other engineers' jobs (not niced)",
                     "runs": runs, "exact_duplicates": exact,
                     "near_duplicates": len(report["near_duplicates"]), "suspects": report["suspect_count"],
                     "outliers": len(report["outliers"]), "out_of_fold_accuracy": report["out_of_fold_accuracy"]})


def _flowers_features(flowers: Path):
    from keras_transfer.backbones import build_backbone
    from keras_transfer.data import DataConfig, load_data
    from keras_transfer.features.extract import extract_features

    data = load_data(DataConfig(source=str(flowers), image_size=SIZE, val_split=0.0, test_split=0.0, augment=(),
                                balance="none", cache="none"))
    model = build_backbone("efficientnet_lite0", weights="imagenet", input_shape=(SIZE, SIZE, 3))
    features = extract_features(model, data, cache_dir=CACHE)
    return model, data, features.xy("train")[0], data.splits["train"].labels


AUGMENTATIONS = {"strong": ((0.80, 0.95), (60, 91)), "mild": ((0.95, 1.0), (80, 96))}  # crop area, JPEG quality


def _augmented(path: str, rng: np.random.Generator, crop=(0.80, 0.95), quality=(60, 91)) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        w, h = image.size
        share = np.sqrt(rng.uniform(*crop))
        cw, ch = int(w * share), int(h * share)
        left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        image = image.crop((left, top, left + cw, top + ch)).resize((SIZE, SIZE))
        if rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=int(rng.integers(*quality)))
        buffer.seek(0)
        return np.asarray(Image.open(buffer).convert("RGB"))


def _quantiles(values: np.ndarray) -> dict[str, float]:
    return {f"p{q}": round(float(np.percentile(values, q)), 4) for q in (0, 1, 5, 25, 50, 75, 95, 99, 100)}


def bench_threshold(flowers: Path, per_class: int = 60) -> None:
    from keras_transfer.data.health import group_ids
    from keras_transfer.features.extract import extract_features

    model, data, x, labels = _flowers_features(flowers)
    paths, digests = data.splits["train"].paths, data.splits["train"].digests
    rng = np.random.default_rng(0)
    chosen = np.concatenate([rng.choice(np.flatnonzero(labels == c), per_class, replace=False)
                             for c in range(len(data.class_names))])
    groups = group_ids(digests)
    out = {"photos": int(len(chosen)), "pool": int(len(x)),
           "augmentations": {name: f"crop {a:.0%}-{b:.0%} of the area, resized back; mirror half the time; JPEG "
                                   f"quality {q0}-{q1 - 1}" for name, ((a, b), (q0, q1)) in AUGMENTATIONS.items()}}
    copies = {}
    for variant, (crop, quality) in AUGMENTATIONS.items():
        images = np.stack([_augmented(paths[i], rng, crop, quality) for i in chosen])
        copies[variant] = extract_features(model, (images, labels[chosen]), cache=False).xy("train")[0]
    grid = np.round(np.arange(0.80, 0.991, 0.01), 2)
    for name, mean in (("raw", np.zeros(x.shape[1], dtype=np.float32)), ("centred", x.mean(axis=0))):
        unit = lambda a: (a - mean) / np.linalg.norm(a - mean, axis=1, keepdims=True)  # noqa: E731
        pool, originals = unit(x), unit(x[chosen])
        sims = originals @ pool.T
        sims[groups[None, :] == groups[chosen][:, None]] = -1.0  # itself and its byte-identical copies
        nearest_other = sims.max(axis=1)
        out[name] = {"nearest_distinct_photo": _quantiles(nearest_other)}
        print(f"{name}: nearest distinct photo {out[name]['nearest_distinct_photo']}")
        for variant, features in copies.items():
            to_copy = (originals * unit(features)).sum(axis=1)
            out[name][f"copy_{variant}"] = _quantiles(to_copy)
            print(f"  {variant} copy {out[name][f'copy_{variant}']}")
        out[name]["by_threshold"] = {
            f"{t:.2f}": {**{f"{v}_copies_found": round(float(((originals * unit(f)).sum(axis=1) >= t).mean()), 4)
                            for v, f in copies.items()},
                         "photos_with_a_distinct_photo_above": round(float((nearest_other >= t).mean()), 4)}
            for t in grid}
        all_pairs = pool @ pool.T
        upper = np.triu(groups[:, None] != groups[None, :], k=1)
        out[name]["distinct_pairs_above_of_4317"] = {f"{t:.2f}": int((all_pairs[upper] >= t).sum())
                                                     for t in (0.85, 0.88, 0.90, 0.92, 0.94, 0.95)}
        print(f"  pairs above: {out[name]['distinct_pairs_above_of_4317']}")
    _save("threshold", out)


def _flip_hits(x: np.ndarray, labels: np.ndarray, seeds=range(5), share: float = 0.05) -> dict:
    from threadpoolctl import threadpool_limits

    from keras_transfer.features.health import out_of_fold_probabilities, rank_suspects

    classes = int(labels.max()) + 1
    hits, seconds, flagged = [], [], []
    n = int(round(share * len(labels)))
    for seed in seeds:
        rng = np.random.default_rng(seed)
        flipped = rng.choice(len(labels), n, replace=False)
        noisy = labels.copy()
        noisy[flipped] = (labels[flipped] + rng.integers(1, classes, n)) % classes
        started = time.perf_counter()
        with threadpool_limits(1):  # as the check runs it (see features/health.py: feature_health)
            suspects = rank_suspects(noisy, out_of_fold_probabilities(x, noisy, seed=seed), every=True)
        seconds.append(time.perf_counter() - started)
        hits.append(len({s["index"] for s in suspects[:n]} & set(flipped.tolist())))
        flagged_set = {s["index"] for s in suspects if s["flagged"]}
        flagged.append([len(flagged_set), len(flagged_set & set(flipped.tolist()))])
    return {"examples": int(len(labels)), "flipped": n, "top_n_hits": hits,
            "share_found": [round(h / n, 3) for h in hits], "flagged_and_flipped_among_them": flagged,
            "seconds": [round(s, 1) for s in seconds]}


def bench_flips(flowers: Path) -> None:
    from keras_transfer.backbones import build_backbone
    from keras_transfer.data import DataConfig, load_data
    from keras_transfer.features.extract import extract_features

    _, _, x, labels = _flowers_features(flowers)
    out = {"flowers5 (Lite0, 128 px)": _flip_hits(x, labels)}
    digits = load_data(DataConfig(source="digits", image_size=64, val_split=0.0, test_split=0.0, augment=(),
                                  balance="none", cache="memory"))
    model = build_backbone("efficientnet_lite0", weights="imagenet", input_shape=(64, 64, 3))
    xd = extract_features(model, digits, cache_dir=CACHE).xy("train")[0]
    out["digits (Lite0, 64 px)"] = _flip_hits(xd, digits.splits["train"].labels)
    for name, value in out.items():
        print(f"{name}: top-{value['flipped']} holds {value['top_n_hits']} flipped labels")
    _save("flips", out)


def bench_outliers(flowers: Path) -> None:
    from keras_transfer.data import load_embedded
    from keras_transfer.features.extract import extract_features
    from keras_transfer.features.health import rank_outliers

    model, _, x, labels = _flowers_features(flowers)
    planted = {"white frame": np.full((SIZE, SIZE, 3), 255, np.uint8), "black frame": np.zeros((SIZE, SIZE, 3), np.uint8),
               "grey frame": np.full((SIZE, SIZE, 3), 128, np.uint8)}
    planted.update({f"digit {i}": image for i, image in enumerate(load_embedded("digits", (SIZE, SIZE)).images[:3])})
    images = np.stack(list(planted.values()))
    extra = extract_features(model, (images, np.arange(len(images)) % 2), cache=False).xy("train")[0]
    found = rank_outliers(np.concatenate([x, extra]), np.concatenate([labels, np.arange(len(extra)) % 5]))
    names = list(planted)
    flagged = [names[o["index"] - len(x)] if o["index"] >= len(x) else "a flower photo" for o in found]
    out = {"planted": names, "flagged": flagged, "details": found}
    print(f"outliers among 4,317 flowers + {', '.join(names)}: {flagged}")
    _save("outliers", out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("part", nargs="?", default="all", choices=["timing", "threshold", "flips", "outliers", "all"])
    parser.add_argument("--flowers", type=Path, default=Path("/work/shared/data/flowers5"))
    args = parser.parse_args()
    for part, bench in (("timing", bench_timing), ("threshold", bench_threshold), ("flips", bench_flips),
                        ("outliers", bench_outliers)):
        if args.part in (part, "all"):
            bench(args.flowers)


if __name__ == "__main__":
    main()
