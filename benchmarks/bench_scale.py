"""How cost grows with the data: every stage of a run at N = 5k, 20k and 50k images, in one run.

Folders of N images are made from the 4,317 flowers5 photos by hard links (symlinks across file
systems), cycled into the five class folders under unique names, so no new data is needed. For
each N a fresh process (so one N never inherits another's peak memory) measures:

1. first scan: `load_data` with an empty manifest (every file decoded once);
2. rerun scan: `load_data` again, the manifest unchanged;
3. first training batches: the first 10 batches of the shuffled, cached training pipeline;
   then the peak RSS so far (the data path);
4. a cached head stage: frozen EfficientNet-Lite0 features of every split (`extract_features`,
   computed once), then 3 epochs of a Dense softmax head on them;
5. feature extraction: one fit of each of `fit_classifier`'s linear estimators (L-BFGS logistic
   regression and the L-BFGS linear SVM) at C = `--c` on the standardised training features,
   with test accuracy; then the peak RSS of the whole process. (Choosing C multiplies these by
   about the grid's nine values; `bench_svm.py` measures that search.)

Images are read at 32 x 32 (`--image-size`) so the three sizes fit in about ten minutes on 2
shared cores; the scan decodes the files whatever the size. A log-log plot goes to `--plot`.

    python benchmarks/bench_scale.py [--sizes 5000,20000,50000] [--quick] [--plot docs/figures/scale.png]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# ../shared/data/flowers5 beside the checkout (or beside its parent, for a worktree in a subfolder)
_ROOT = Path(__file__).resolve().parents[1]
FLOWERS = next((p for p in (_ROOT.parent / "shared", _ROOT.parent.parent / "shared") if p.is_dir()),
               _ROOT.parent / "shared") / "data" / "flowers5"
STAGES = ("first scan", "rerun scan", "first batches", "head stage", "logistic", "linear SVM")


def make_folder(target: Path, n: int, flowers: Path) -> Path:
    """`target/<class>/<i>_<name>` for n images cycled from `flowers`, hard-linked (or symlinked)."""
    by_class: dict[str, list[Path]] = {}
    for p in sorted(flowers.glob("*/*")):
        if p.is_file():
            by_class.setdefault(p.parent.name, []).append(p)
    # interleaved across classes, so every N keeps the classes' proportions
    files = sorted((p for ps in by_class.values() for p in ps),
                   key=lambda p: (by_class[p.parent.name].index(p) / len(by_class[p.parent.name]), p.parent.name))
    if not files:
        sys.exit(f"{flowers} holds no <class>/<image> files; pass --flowers FOLDER")
    for cls in by_class:
        (target / cls).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        source = files[i % len(files)]
        link = target / source.parent.name / f"{i // len(files)}_{source.name}"
        try:
            os.link(source, link)
        except OSError:
            os.symlink(source.resolve(), link)
    return target


def _peak_mb() -> float:
    """This process's peak resident memory so far (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(folder: str, cache: str, image_size: int, c: float) -> dict:
    """Measure every stage on `folder` in this (fresh) process; return the figures."""
    from keras_transfer.data import DataConfig, load_data

    config = DataConfig(source=f"folder:{folder}", image_size=image_size, augment=(), cache_dir=cache)
    out: dict = {}
    started = time.perf_counter()
    data = load_data(config)
    out["first scan"] = time.perf_counter() - started
    started = time.perf_counter()
    data = load_data(config)
    out["rerun scan"] = time.perf_counter() - started
    started = time.perf_counter()
    for _ in data.dataset("train").take(10):
        pass
    out["first batches"] = time.perf_counter() - started
    out["peak data MB"] = _peak_mb()

    import keras

    from keras_transfer.backbones import build_backbone
    from keras_transfer.features import extract_features

    started = time.perf_counter()
    backbone = build_backbone("efficientnet_lite0", weights="imagenet", input_shape=(image_size, image_size, 3))
    features = extract_features(backbone, data, cache=False)
    out["extraction"] = time.perf_counter() - started
    (x, y), (xv, yv), (xt, yt) = (features.xy(split) for split in ("train", "val", "test"))
    head = keras.Sequential([keras.Input(x.shape[1:]), keras.layers.Dense(data.num_classes, activation="softmax")])
    head.compile(optimizer=keras.optimizers.Adam(0.001), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    epochs_started = time.perf_counter()
    head.fit(x, y, validation_data=(xv, yv), epochs=3, batch_size=32, verbose=0)
    out["head epochs"] = time.perf_counter() - epochs_started
    out["head stage"] = out["extraction"] + out["head epochs"]
    out["head accuracy"] = float(head.evaluate(xt, yt, verbose=0)[1])
    from sklearn.linear_model import LogisticRegression

    from keras_transfer.features.svm import SquaredHingeSVC

    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    z, zt = (x - mean) / scale, (xt - mean) / scale
    for name, estimator in (("logistic", LogisticRegression(C=c, max_iter=1000)), ("linear SVM", SquaredHingeSVC(c))):
        started = time.perf_counter()
        estimator.fit(z, y)  # what fit_classifier does once per C (its search: see bench_svm.py)
        out[name] = time.perf_counter() - started
        out[f"{name} accuracy"] = float((estimator.predict(zt) == yt).mean())
    out["peak MB"] = _peak_mb()
    out["train images"] = len(y)
    out["skipped"] = len(data.skipped)
    return out


def plot(results: dict[int, dict], path: Path) -> None:
    """Seconds per stage and peak memory against N, log-log."""
    from keras_transfer.core.plots import new_figure, save_figure

    sizes = sorted(results)
    fig, (times, memory) = new_figure(1, 2, size=(11, 4.2))
    for stage in STAGES:
        times.plot(sizes, [results[n][stage] for n in sizes], marker="o", label=stage)
    times.set(xscale="log", yscale="log", xlabel="images N", ylabel="seconds", title="Time per stage")
    times.legend(fontsize=8)
    for key, label in (("peak data MB", "data path (scan + first batches)"), ("peak MB", "whole process")):
        memory.plot(sizes, [results[n][key] for n in sizes], marker="o", label=label)
    memory.set(xscale="log", yscale="log", xlabel="images N", ylabel="peak RSS (MB)", title="Peak memory")
    memory.legend(fontsize=8)
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="5000,20000,50000", help="comma-separated numbers of images")
    parser.add_argument("--quick", action="store_true", help="sizes 1000,3000: a try-out in about a minute")
    parser.add_argument("--image-size", type=int, default=32, help="pixels the pipeline and Lite0 see")
    parser.add_argument("--c", type=float, default=0.1, help="C of the one feature extraction fit per classifier")
    parser.add_argument("--flowers", default=str(FLOWERS.resolve()), help="the folder of class folders to cycle")
    parser.add_argument("--plot", default=None, help="write the log-log plot here (PNG)")
    parser.add_argument("--child", nargs=2, metavar=("FOLDER", "CACHE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(*args.child, args.image_size, args.c)), flush=True)
        return
    sizes = [1000, 3000] if args.quick else [int(s) for s in args.sizes.split(",")]
    results = {}
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "TF_CPP_MIN_LOG_LEVEL": "2"}
    with tempfile.TemporaryDirectory(prefix="kt-scale-") as scratch:
        for n in sizes:
            folder = make_folder(Path(scratch) / f"n{n}", n, Path(args.flowers))
            cache = Path(scratch) / f"cache{n}"
            done = subprocess.run([sys.executable, __file__, "--image-size", str(args.image_size), "--c", str(args.c),
                                   "--child", str(folder), str(cache)], env=env, capture_output=True, text=True, check=False)
            lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
            if done.returncode or not lines:
                sys.exit(f"N={n} failed:\n{done.stderr[-3000:]}")
            results[n] = json.loads(lines[-1][len("RESULT "):])
            r = results[n]
            print(f"N={n:,} ({r['train images']:,} train): " + ", ".join(f"{s} {r[s]:.2f} s" for s in STAGES)
                  + f"; peak RSS data path {r['peak data MB']:.0f} MB, whole {r['peak MB']:.0f} MB; test accuracy "
                  f"head {r['head accuracy']:.3f}, logistic {r['logistic accuracy']:.3f}, "
                  f"SVM {r['linear SVM accuracy']:.3f}", flush=True)
    small, large = min(sizes), max(sizes)
    print(f"\nper file, first scan: {1e6 * results[large]['first scan'] / large:.0f} us; rerun scan: "
          f"{1e6 * results[large]['rerun scan'] / large:.1f} us (N={large:,})")
    for stage in STAGES:
        ratio = results[large][stage] / results[small][stage]
        print(f"  {stage:14s} x{ratio:6.2f} from N={small:,} to N={large:,} (data x{large / small:.1f})")
    print(f"  peak RSS, data path: x{results[large]['peak data MB'] / results[small]['peak data MB']:.2f}; "
          f"whole process: x{results[large]['peak MB'] / results[small]['peak MB']:.2f}")
    print("  extraction / head epochs: " + ", ".join(
        f"N={n:,} {results[n]['extraction']:.1f} / {results[n]['head epochs']:.1f} s" for n in sizes))
    if args.plot:
        plot(results, Path(args.plot))
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
