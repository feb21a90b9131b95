"""Using the images nobody labelled: AdaBN, self-training and suggested labels, measured.

1. plates (the digits scenario's domain-adaptation target): labels only for the source domain,
   600 unlabelled `plates_0_4` images, scored on 400 other plates. Two labelled sources: the
   material's `digits_0_4` (8x8 handwritten scans) and `render("printed")` (the plates' digits,
   black on white paper: the same glyphs, only the plate's photometric shift between them). Two
   backbones: a source CNN with BatchNorm trained here on the scenario's labelled source (cut at
   conv3_relu, 32x32) and ImageNet EfficientNet-Lite0 (64x64). Methods, all feature extraction
   (logistic regression on frozen features, the steps `model.head.type: logistic` runs): source
   only; AdaBN (`model.adapt: adabn`); feature statistics (`model.adapt: feature_stats`);
   class-balanced self-training (3 rounds, share 0.6); feature statistics plus self-training;
   and the labelled oracle (the 600 plates with their labels).
   Goal: adaptation and self-training each >= 5 points above source only.
2. letters with few labels: 5 labelled letters per class, 500 unlabelled letters (another seed),
   scored on the letters' test split; the same methods, and the 500 with their labels.
3. active learning on flowers5 (cached Lite0 features at 128x128, logistic regression): test
   accuracy against the number of labels, from 10 random labels in batches of 10, picking as
   `suggest --method auto` does ("suggested": typical below 20 labels per class, then uncertain),
   or at random (`STRATEGIES`; `typical`, `uncertain`, `margin only` also run). Goal: suggested picks reach
   random picks' accuracy with <= 70% of their labels.

    python benchmarks/bench_unlabeled.py [--seeds 0 1 2] [--flowers /work/shared/data/flowers5]
                                         [--skip plates letters active]

Results: benchmarks/results/unlabeled.json (every seed, then mean and spread).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "unlabeled.json"
METHODS = ("source only", "adabn", "feature stats", "self-training", "feature stats + self-training", "oracle")
SELF_TRAINING = {"rounds": 3, "share": 0.6}  # the library's defaults (class-balanced rounds)
# Three decades of C instead of the library's nine: the same choice on these features in our
# checks, at a third of the fits (the oracle's cross-validation dominated the run time).
GRID = (0.01, 0.1, 1.0)
# The active-learning strategies measured ("typical", "uncertain" and "margin only" are the parts
# of "suggested", for a closer look: --strategies).
STRATEGIES = ("suggested", "random")


def _quiet(_line: str) -> None:
    pass


def save_part(part: str, value) -> None:
    """Write one part's results into the results file now (parts and seeds finish one by one)."""
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    results[part] = value
    results["summary"] = _summary(results)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1))


def source_cnn(work: Path, seed: int, source: str = "digits_0_4", name: str = "source") -> Path:
    """A digits 0-4 source CNN with BatchNorm, trained on `source` at 32x32; its model.keras."""
    from keras_transfer.config import from_dict
    from keras_transfer._notebook import digits_cnn
    from keras_transfer.training import run

    digits_cnn((32, 32, 3), seed=seed, batch_norm=True).save(work / "init.keras")
    result = run(from_dict({
        "data": {"source": source, "image_size": [32, 32], "augment": [], "batch_size": 16, "seed": seed},
        "model": {"backbone": str(work / "init.keras")},
        "training": {"seed": seed, "stages": [{"name": "all", "train": "all", "epochs": 10, "learning_rate": 0.002}]},
    }), work / name, log=_quiet)
    print(f"  source CNN on {Path(source).name} (seed {seed}): test accuracy {result.metrics['test']['accuracy']:.3f}")
    return result.run_dir / "model.keras"


class Transfer:
    """feature extraction on one backbone, step by step, as `run_feature_classifier` does it (the test suite
    holds the run to these steps): features of the labelled splits, of the unlabelled pool and of
    the target test images, under the source's or the adapted BatchNorm statistics."""

    def __init__(self, backbone: str, cut_at: str | None, size: int, seed: int):
        self.spec, self.size, self.seed = (backbone, cut_at), size, seed

    def _backbone(self):
        from keras_transfer.backbones import build_backbone

        return build_backbone(self.spec[0], weights="imagenet", input_shape=(self.size, self.size, 3),
                              cut_at=self.spec[1])

    def _features(self, backbone, data) -> dict:
        from keras_transfer.features import extract_features

        found = extract_features(backbone, data, cache=False)
        return {split: found.xy(split) for split in found.splits}

    def evaluate(self, labelled, pool: tuple, test: tuple, oracle: bool = True) -> dict:
        """Target test accuracy of every method; `labelled` is a DataBundle with train and val splits."""
        from keras_transfer.features.align import feature_alignment
        from keras_transfer.features.classifiers import fit_classifier
        from keras_transfer.features.self_training import self_train
        from keras_transfer.training.adapt import adapt_batchnorm, adapt_before_fit

        k, row = labelled.num_classes, {}
        backbone = self._backbone()
        source = self._features(backbone, labelled)
        unl = self._features(backbone, pool)["train"][0]  # features only
        tst = self._features(backbone, test)["train"]

        def fit(f):
            return fit_classifier("logistic", *f["train"], num_classes=k, validation=f.get("val"), grid=GRID,
                                  seed=self.seed)

        def self_trained(clf, f, xu):
            clf, rounds = self_train("logistic", *f["train"], xu, num_classes=k, validation=f.get("val"),
                                     seed=self.seed, classifier=clf, score=lambda i, p: int((pool[1][i] == p).sum()),
                                     **SELF_TRAINING)
            return clf, [(r.taken, r.right) for r in rounds]

        clf = fit(source)
        row["source only"] = clf.score(*tst)
        st, row["self-training rounds"] = self_trained(clf, source, unl)
        row["self-training"] = st.score(*tst)
        alignment = feature_alignment(source["train"][0], unl)
        row["feature stats"] = clf.score(alignment.to_source(tst[0]), tst[1])
        st, row["feature stats + self-training rounds"] = self_trained(clf, source, alignment.to_source(unl))
        row["feature stats + self-training"] = st.score(alignment.to_source(tst[0]), tst[1])
        if oracle:  # the pool with its labels, C by cross-validation
            row["oracle"] = fit_classifier("logistic", unl, pool[1], num_classes=k, grid=GRID,
                                           seed=self.seed).score(*tst)
        adapt_before_fit(backbone, labelled.dataset("train", training=False), len(labelled.splits["train"]),
                         _pixels(pool[0]))
        adapted = self._features(backbone, labelled)
        clf = fit(adapted)
        adapt_batchnorm(backbone, _pixels(pool[0]))
        row["adabn"] = clf.score(*self._features(backbone, test)["train"])
        return {m: (round(float(v), 4) if isinstance(v, float) else v) for m, v in row.items()}


def _pixels(images: np.ndarray):
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices(images.astype("float32")).batch(64)


def plates(seeds: list[int]) -> dict:
    """Per scenario (labelled source -> plates), backbone and seed: plates test accuracy of every method.

    Each scenario's CNN is trained on that scenario's labelled source (the material's source
    model), at 32x32; ImageNet Lite0 runs at 64x64, where a plate's digit spans a few of its
    2x2 final positions (at 32x32 its features are 1x1 and the oracle reaches 0.60, at 64x64 0.89)."""
    from keras_transfer.data import DataConfig, load_data
    from keras_transfer.data.synthetic import render

    out: dict = {}
    for seed in seeds:
        work = Path(tempfile.mkdtemp(prefix=f"bench-unlabeled-{seed}-"))
        order = np.random.default_rng(seed).permutation(1000)
        pool, test = order[:600], order[600:]
        for scenario, labelled in (("printed -> plates", "printed"), ("digits_0_4 -> plates", "digits_0_4")):
            for name, size in (("source CNN", 32), ("ImageNet Lite0", 64)):
                images, labels, classes = render("plates", (size, size))
                source = labelled
                if labelled == "printed":
                    printed, printed_labels, _ = render("printed", (size, size), seed=seed)
                    source = str(work / f"printed{size}.npz")
                    np.savez(source, x=printed, y=printed_labels, class_names=np.array(classes))
                backbone, cut = ((str(source_cnn(work, seed, source, f"cnn-{labelled}")), "conv3_relu")
                                 if name == "source CNN" else ("efficientnet_lite0", None))
                data = load_data(DataConfig(source=source, image_size=size, augment=(), test_split=0.0, seed=seed))
                started = time.perf_counter()
                row = Transfer(backbone, cut, size, seed).evaluate(
                    data, (images[pool], labels[pool]), (images[test], labels[test]), oracle=True)
                print(f"  {scenario}, {name}, seed {seed}: " + ", ".join(f"{m} {v:.3f}" for m, v in row.items()
                      if not m.endswith("rounds")) + f" ({time.perf_counter() - started:.0f} s)", flush=True)
                out.setdefault(scenario, {}).setdefault(name, {})[str(seed)] = row
                save_part("plates", out)
    return out


def letters(seeds: list[int], few: int = 5) -> dict:
    """Letters with `few` labels per class, 500 unlabelled letters of another seed; test: the letters'
    test split. The digits 0-4 CNN at 32x32, ImageNet Lite0 at 64x64."""
    from keras_transfer.data import DataConfig, load_data
    from keras_transfer.data.synthetic import render

    out = {}
    for seed in seeds:
        work = Path(tempfile.mkdtemp(prefix=f"bench-letters-{seed}-"))
        source = source_cnn(work, seed)
        for name, backbone, cut, size in (("source CNN", str(source), "conv3_relu", 32),
                                          ("ImageNet Lite0", "efficientnet_lite0", None, 64)):
            pool = render("letters", (size, size), per_class=100, seed=1000 + seed)[:2]
            few_data = load_data(DataConfig(source="letters", image_size=size, augment=(), few_shot=few, seed=seed))
            test = few_data.splits["test"].images, few_data.splits["test"].labels
            row = Transfer(backbone, cut, size, seed).evaluate(few_data, pool, test, oracle=True)
            row["all labels (pool)"] = row.pop("oracle")
            print(f"  letters, {name}, seed {seed}: " + ", ".join(f"{m} {v:.3f}" for m, v in row.items()
                  if not m.endswith("rounds")), flush=True)
            out.setdefault(name, {})[str(seed)] = row
            save_part("letters", out)
    return out


def active(flowers: Path, seeds: list[int], start: int = 10, step: int = 10, budget: int = 150) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from keras_transfer.data import DataConfig, load_data
    from keras_transfer.features import extract_features
    from keras_transfer.features.suggest import (TYPICAL_BELOW_PER_CLASS, suggest_indices, typical_indices,
                                                 uncertainty_scores)

    data = load_data(DataConfig(source=str(flowers), image_size=128, val_split=0.0, test_split=0.3, augment=()))
    features = extract_features("efficientnet_lite0", data, log=print)
    xp, yp = features.xy("train")
    xt, yt = features.xy("test")
    scaler = StandardScaler().fit(xp)  # unsupervised: the pool's own statistics
    xp, xt = scaler.transform(xp), scaler.transform(xt)
    classes = data.num_classes
    curves: dict[str, dict[str, list[float]]] = {}
    for seed in seeds:
        rng = np.random.default_rng(seed)
        first = np.concatenate([rng.choice(np.flatnonzero(yp == c), start // classes, replace=False)
                                for c in range(classes)])
        for strategy in STRATEGIES:
            labelled, accuracy = list(first), []
            while True:
                model = LogisticRegression(C=0.1, max_iter=2000).fit(xp[labelled], yp[labelled])
                accuracy.append(float(model.score(xt, yt)))
                if len(labelled) >= budget:
                    break
                rest = np.setdiff1d(np.arange(len(yp)), labelled)
                if strategy == "random":
                    picks = rng.choice(rest, step, replace=False)
                else:
                    p = model.predict_proba(xp[rest])
                    typical = strategy == "typical" or (
                        strategy == "suggested" and len(labelled) / classes < TYPICAL_BELOW_PER_CLASS)
                    if strategy == "margin only":
                        picks = rest[np.argsort(-uncertainty_scores(p), kind="stable")[:step]]
                    elif typical:
                        picks = rest[typical_indices(xp[rest], step, labelled_features=xp[labelled], seed=seed)]
                    else:
                        picks = rest[suggest_indices(xp[rest], p, step, labelled_features=xp[labelled], seed=seed)]
                labelled.extend(int(i) for i in picks)  # the user labels them: their true labels join
            curves.setdefault(strategy, {})[str(seed)] = [round(a, 4) for a in accuracy]
            labels = list(range(start, budget + 1, step))
            if "random" in curves and str(seed) in curves["random"]:
                save_part("active", {"labels": labels, "curves": curves, "label_ratio": _label_ratio(labels, curves)})
            print(f"  flowers5 active learning, seed {seed}, {strategy:<11}: "
                  + " ".join(f"{a:.3f}" for a in accuracy[::3]), flush=True)
    labels = list(range(start, budget + 1, step))
    return {"labels": labels, "curves": curves, "label_ratio": _label_ratio(labels, curves)}


def _label_ratio(labels: list[int], curves: dict) -> dict:
    """Per seed and budget b of random picks: the fewest suggested labels reaching random's accuracy at b, / b."""
    ratios = {}
    for seed, random_curve in curves["random"].items():
        suggested = curves["suggested"][seed]
        row = {}
        for b, target in zip(labels, random_curve):
            if b < 50:
                continue
            reached = [n for n, a in zip(labels, suggested) if a >= target]
            row[str(b)] = round(reached[0] / b, 3) if reached else None
        ratios[seed] = row
    return ratios


def _summary(results: dict) -> dict:
    summary = {}
    def spread(by_seed: dict) -> dict:
        methods = [m for m in next(iter(by_seed.values())) if not m.endswith("rounds")]
        return {m: {"mean": round(float(np.mean([r[m] for r in by_seed.values()])), 4),
                    "min": min(r[m] for r in by_seed.values()), "max": max(r[m] for r in by_seed.values())}
                for m in methods}

    for scenario, by_backbone in results.get("plates", {}).items():
        summary.setdefault("plates", {})[scenario] = {b: spread(s) for b, s in by_backbone.items()}
    for backbone, by_seed in results.get("letters", {}).items():
        summary.setdefault("letters", {})[backbone] = spread(by_seed)
    if "active" in results:
        a = results["active"]
        mean = {s: np.mean(list(c.values()), axis=0).round(4).tolist() for s, c in a["curves"].items()}
        final = [r.get(str(a["labels"][-1])) for r in a["label_ratio"].values()]
        mean_ratio = _label_ratio(a["labels"], {s: {"mean": c} for s, c in mean.items()})["mean"]
        summary["active"] = {"labels": a["labels"], "mean_curves": mean, "ratio_at_final_budget": final,
                             "ratio_on_mean_curves": mean_ratio}
    return summary


def figures(results: dict, folder: Path = Path(__file__).parents[1] / "docs" / "figures") -> None:
    """docs/figures/plates_letters.png (samples of the two sources) and active_learning.png (the curves)."""
    from keras_transfer.core import plots
    from keras_transfer.data.synthetic import render

    fig, axes = plots.new_figure(2, 10, size=(12, 2.8), squeeze=False)
    for row, kind in enumerate(("plates", "letters")):
        images, labels, names = render(kind, (64, 64))
        for ax, image, label in zip(axes[row], images[:10], labels[:10]):
            ax.imshow(image)
            ax.set_title(names[label], fontsize=8)
            ax.axis("off")
    fig.suptitle("plates_0_4 and letters (seed 0)", fontsize=9)
    plots.save_figure(fig, folder / "plates_letters.png")
    if "active" in results.get("summary", {}):
        a = results["summary"]["active"]
        fig, ax = plots.new_figure(size=(6, 4))
        for strategy, curve in a["mean_curves"].items():
            ax.plot(a["labels"], curve, "o-" if strategy == "suggested" else ".-", label=strategy)
        ax.set_xlabel("labelled images (flowers5 pool)")
        ax.set_ylabel("test accuracy (mean of seeds)")
        ax.set_title("Active learning on cached Lite0 features (128 px, logistic regression)", fontsize=9)
        ax.legend()
        plots.save_figure(fig, folder / "active_learning.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--flowers", type=Path, default=Path("/work/shared/data/flowers5"))
    parser.add_argument("--skip", nargs="*", default=[], choices=["plates", "letters", "active"])
    args = parser.parse_args()
    results = {}
    started = time.perf_counter()
    if "plates" not in args.skip:
        results["plates"] = plates(args.seeds)
    if "letters" not in args.skip:
        results["letters"] = letters(args.seeds)
    if "active" not in args.skip:
        if args.flowers.is_dir():
            results["active"] = active(args.flowers, args.seeds)
        else:
            print(f"skipping active learning: {args.flowers} is not a folder")
    # Parts run separately (--skip) update their own entries of the results file.
    results = {**(json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}), **results}
    results["summary"] = _summary(results)
    results["command"] = "python benchmarks/bench_unlabeled.py --seeds " + " ".join(map(str, args.seeds))
    results["self_training"] = SELF_TRAINING
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1))
    figures(results)
    print(json.dumps(results["summary"], indent=1))
    print(f"wrote {RESULTS} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
