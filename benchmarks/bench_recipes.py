"""The recipe matrix: which transfer recipe wins on which data, measured, and what `recipe: auto` picks.

Cells: the flower photos of ../shared/data/flowers5 (a domain like ImageNet) at 5, 20 and all
training examples per class, and the embedded 8x8 digits (a domain unlike it) at 5 and all. In
each cell and seed, one run measures, on the same splits and the same EfficientNet-Lite0 ImageNet
weights:

- the measurements `recipe: auto` makes (examples per class, the linear probe of every block, the
  BatchNorm shift), whose probe is also **feature extraction**: logistic regression on the best-probed
  block (chosen on validation), scored on test;
- the packaged `photos` recipe's stages run one after another (`head`, then `top`: the top two
  blocks with per-block rates, then `full`: everything), the test accuracy taken after each stage,
  so **head only**, **head + top blocks** and **full fine-tuning** are three prefixes of one run;
- the **Keras guide's recipe** (keras.io "Transfer learning & fine-tuning") written plainly in
  Keras as the peer: in-model flip + rotation(0.1) augmentation, the frozen base called with
  training=False, global pooling, dropout 0.2, Dense; Adam for 20 epochs, then the whole base
  trainable at Adam(1e-5) for 10 epochs.

`auto`'s row is the recipe `keras_transfer.features.advisor.decide` picks from that cell's
measurements; its time is the measurement plus the picked recipe. Results accumulate in a JSON
file (one entry per cell and seed, written atomically), so an interrupted matrix resumes where it
stopped and `report` re-reads it after the decision's thresholds change.

    python benchmarks/bench_recipes.py run [--cells flowers5@5,flowers5@20,flowers5@all,digits@5,digits@all]
                                           [--seeds 0,1,2] [--big-seeds 0] [--image-size 96]
    python benchmarks/bench_recipes.py report      # the table, the goals, docs/figures/recipes.png
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "recipes.json"
FLOWERS = HERE.parents[1] / "shared" / "data" / "flowers5"
EUROSAT = HERE.parents[1] / "shared" / "data" / "eurosat5"  # its own train/ and test/
CURVES = HERE / "results" / "curves.json"
CELLS = ("flowers5@5", "flowers5@20", "flowers5@all", "digits@5", "digits@all")
RECIPES = ("head", "top", "full", "solution2", "keras_guide")
LABELS = {"head": "head only", "top": "head + top blocks", "full": "full fine-tuning",
          "solution2": "feature extraction (logistic, best block)", "keras_guide": "Keras guide (peer)", "auto": "auto"}


def _data_raw(cell: str, seed: int, image_size: int) -> dict:
    import yaml

    from keras_transfer.config import packaged_config

    name, k = cell.split("@")
    source = {"flowers5": f"folder:{FLOWERS}", "eurosat5": f"folder:{EUROSAT}"}.get(name, name)
    data = yaml.safe_load(packaged_config("photos").read_text())["data"]
    data.update(source=source, image_size=[image_size, image_size], few_shot=None if k == "all" else int(k), seed=seed)
    return data


def _ours_raw(cell: str, seed: int, image_size: int) -> dict:
    import yaml

    from keras_transfer.config import packaged_config

    raw = yaml.safe_load(packaged_config("photos").read_text())
    raw["data"] = _data_raw(cell, seed, image_size)
    raw["training"].update(seed=seed, recipe="stages")
    return raw


def measure(cell: str, seed: int, image_size: int) -> dict:
    """What `recipe: auto` measures, with feature extraction's test accuracy read off the same probe."""
    import tempfile

    import keras

    from keras_transfer.backbones import build_backbone
    from keras_transfer.config import from_dict
    from keras_transfer.data import load_data
    from keras_transfer.features.advisor import measure_data

    started = time.perf_counter()
    keras.utils.set_random_seed(seed)
    config = from_dict(_ours_raw(cell, seed, image_size))
    data = load_data(config.data)
    backbone = build_backbone("efficientnet_lite0", weights="imagenet", input_shape=(image_size, image_size, 3))
    with tempfile.TemporaryDirectory() as cache:  # a fresh feature cache: the measurement is timed
        m = measure_data(backbone, data, cache_dir=cache)
    seconds = time.perf_counter() - started
    best = max(m.probe.rows, key=lambda r: m.probe.accuracy(r.layer))
    return {"per_class": m.examples_per_class, "probe_gap": m.probe_gap, "bn_shift": m.bn_shift,
            "best_layer": best.layer, "probe": [[r.layer, r.val_accuracy, r.test_accuracy] for r in m.probe.rows],
            "measure_seconds": round(seconds, 1),
            "solution2": {"accuracy": best.test_accuracy, "seconds": round(seconds, 1)}}


def ours(cell: str, seed: int, image_size: int) -> dict:
    """head, head+top, head+top+full as three prefixes of one staged run; test accuracy after each."""
    import tempfile

    import numpy as np

    from keras_transfer.config import from_dict
    from keras_transfer.training import run

    config = from_dict(_ours_raw(cell, seed, image_size))
    results, spent = {}, {"eval": 0.0}
    started = time.perf_counter()

    def on_stage_end(index, stage, model) -> None:
        from keras_transfer.data import load_data

        clock = time.perf_counter()
        elapsed = clock - started - spent["eval"]  # the recipe's time, without the scoring below
        data = spent.get("data") or spent.setdefault("data", load_data(config.data))
        y = np.concatenate([np.asarray(labels) for _, labels in data.dataset("test")])
        predicted = np.asarray(model.predict(data.dataset("test"), verbose=0)).argmax(axis=-1)
        results[stage.name] = {"accuracy": float((predicted == y).mean()), "seconds": round(elapsed, 1)}
        spent["eval"] += time.perf_counter() - clock

    with tempfile.TemporaryDirectory() as folder:
        run(config, folder, log=lambda line: None, on_stage_end=on_stage_end)
    return results


def curve(cell: str, seed: int, image_size: int) -> dict:
    """The staged recipe of `ours`, with every epoch's validation and test accuracy and the time
    spent so far (scoring excluded): what a stopping rule would have seen and what it would have kept."""
    import tempfile

    from keras_transfer.config import from_dict
    from keras_transfer.forward import extract
    from keras_transfer.training import engine, run

    config = from_dict(_ours_raw(cell, seed, image_size))
    rows, spent = [], {"eval": 0.0}
    recorded = engine._EpochRecorder.on_epoch_end

    def on_epoch_end(recorder, epoch, logs=None):
        recorded(recorder, epoch, logs)
        clock = time.perf_counter()
        elapsed = clock - started - spent["eval"]
        outputs, labels = extract(recorder.run.model, recorder.run.data.dataset("test"))
        row = recorder.run.history[-1]
        rows.append({"stage": row["stage"], "epoch": row["stage_epoch"], "seconds": round(elapsed, 1),
                     "val_accuracy": row.get("val_accuracy"), "val_loss": row.get("val_loss"),
                     "test_accuracy": float((outputs.argmax(axis=1) == labels).mean())})
        spent["eval"] += time.perf_counter() - clock

    engine._EpochRecorder.on_epoch_end = on_epoch_end
    stage_ends = {}

    def on_stage_end(index, stage, model) -> None:  # the weights early stopping restored
        clock = time.perf_counter()
        outputs, labels = extract(model, run_data["data"].dataset("test"))
        stage_ends[stage.name] = float((outputs.argmax(axis=1) == labels).mean())
        spent["eval"] += time.perf_counter() - clock

    from keras_transfer.data import load_data

    run_data = {"data": load_data(config.data)}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        run(config, folder, log=lambda line: None, on_stage_end=on_stage_end)
    return {"cell": cell, "seed": seed, "image_size": image_size, "epochs": rows, "stage_ends": stage_ends}


def stopping(thresholds: list[float], stage: str = "full", weigh_first: bool = False) -> None:
    """What `min_gain_per_minute` on `stage` would have kept, replayed on the stored curves.

    Each curve's epochs are replayed as the rule sees them (the run's best validation accuracy
    before the epoch, the epoch's minutes; the stage's first epoch is not weighed, as in
    `GainPerMinute`, unless `weigh_first`); at the first epoch below the threshold the stage ends
    and early stopping's restored epoch (lowest validation loss so far in the stage) gives the
    test accuracy kept. The epochs of earlier stages are as they ran, so only the last stage's
    rule replays exactly.
    """
    curves = json.loads(CURVES.read_text()) if CURVES.exists() else []
    print(f"| cell | min_gain_per_minute | {stage} epochs | test accuracy | wall time | vs without the rule |")
    print("|---|---:|---:|---:|---:|---|")
    for entry in curves:
        rows = entry["epochs"]
        first = next(i for i, r in enumerate(rows) if r["stage"] == stage)
        before = rows[first - 1]["seconds"] if first else 0.0
        full = rows[first:]
        baseline = None
        for threshold in [None, *thresholds]:
            best = max(r["val_accuracy"] for r in rows[:first])
            kept, clock = [], before
            for r in full:
                kept.append(r)
                minutes = (r["seconds"] - clock) / 60
                clock = r["seconds"]
                gain = 100 * (r["val_accuracy"] - best)
                best = max(best, r["val_accuracy"])
                if threshold is not None and (weigh_first or len(kept) > 1) and gain / minutes < threshold:
                    break
            restored = min(kept, key=lambda r: r["val_loss"])
            result = (len(kept), restored["test_accuracy"], kept[-1]["seconds"])
            baseline = baseline or result
            vs = "" if threshold is None else (f"{100 * (result[1] - baseline[1]):+.1f} points, "
                                               f"{result[2] - baseline[2]:+.0f} s")
            print(f"| {entry['cell']} | {'off' if threshold is None else threshold:} | {result[0]} | "
                  f"{100 * result[1]:.1f} | {result[2]:.0f} s | {vs} |")


def keras_guide(cell: str, seed: int, image_size: int, *, literal: bool = False) -> dict:
    """The keras.io transfer-learning guide's recipe, written plainly in Keras, on the same splits.

    The guide keeps BatchNorm in inference mode once the base is unfrozen by calling the base with
    training=False. In Keras 3, `fit` calls the model with training=True and that reaches the
    nested BatchNorm layers anyway once they are trainable (keras-team/keras#20285): their batch
    statistics replace the moving ones and the fine-tuning phase undoes the frozen phase (digits,
    all data: 44% test accuracy). The peer does what the guide means, leaving the BatchNorm layers
    frozen when the base is unfrozen; `literal=True` runs the guide's code as written.
    """
    import keras

    from keras_transfer.backbones import build_backbone
    from keras_transfer.config import from_dict
    from keras_transfer.data import load_data

    started = time.perf_counter()
    keras.utils.set_random_seed(seed)
    raw = _ours_raw(cell, seed, image_size)
    raw["data"]["augment"] = []  # the guide augments inside its model
    data = load_data(from_dict(raw).data)
    base = build_backbone("efficientnet_lite0", weights="imagenet", input_shape=(image_size, image_size, 3))
    base.trainable = False
    inputs = keras.Input((image_size, image_size, 3))
    x = keras.layers.RandomFlip("horizontal")(inputs)
    x = keras.layers.RandomRotation(0.1)(x)
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(data.num_classes, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    train, val, test = data.dataset("train"), data.dataset("val"), data.dataset("test")
    model.compile(keras.optimizers.Adam(), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(train, validation_data=val, epochs=20, verbose=0)
    base.trainable = True
    if not literal:
        for layer in base.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False  # inference mode in Keras 3: what training=False meant in Keras 2
    model.compile(keras.optimizers.Adam(1e-5), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(train, validation_data=val, epochs=10, verbose=0)
    seconds = time.perf_counter() - started
    return {"accuracy": float(model.evaluate(test, verbose=0)[1]), "seconds": round(seconds, 1)}


def one(cell: str, seed: int, image_size: int, *, peer: bool = True) -> dict:
    """Every recipe of one cell and seed, in one process."""
    entry = {"cell": cell, "seed": seed, "image_size": image_size, "ours_rerun": True}
    entry["measure"] = measure(cell, seed, image_size)
    entry["recipes"] = {**ours(cell, seed, image_size), "solution2": entry["measure"].pop("solution2")}
    if peer:
        entry["recipes"]["keras_guide"] = keras_guide(cell, seed, image_size)
    return entry


def _child(cell: str, seed: int, image_size: int, *flags: str) -> dict:
    """`one` in a fresh process, so one cell's traces and memory never touch the next; its JSON."""
    out = subprocess.run([sys.executable, __file__, "one", cell, str(seed), "--image-size", str(image_size), *flags],
                         capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"{cell} seed {seed} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _update(entry: dict, change) -> None:
    """Apply `change` to the stored copy of `entry` and write the results file again."""
    entries = _load()
    for stored in entries:
        if all(stored[k] == entry[k] for k in ("cell", "seed", "image_size")):
            change(stored)
    _save(entries)


def redo_peer(cells: list[str], image_size: int) -> None:
    """Rerun the peer of stored entries measured before the BatchNorm fix (kept as keras_guide_literal)."""
    for entry in _load():
        if entry["cell"] not in cells or entry["image_size"] != image_size or "keras_guide_literal" in entry["recipes"]:
            continue
        print(f"{entry['cell']} seed {entry['seed']}: the peer again ...", flush=True)
        peer = _child(entry["cell"], entry["seed"], image_size, "--only-peer")
        _update(entry, lambda stored: stored["recipes"].update(keras_guide_literal=stored["recipes"]["keras_guide"],
                                                               keras_guide=peer))
        print(f"  {peer['accuracy']:.3f}/{peer['seconds']:.0f}s (as written: "
              f"{entry['recipes']['keras_guide']['accuracy']:.3f})", flush=True)


def redo_ours(cells: list[str], image_size: int) -> None:
    """Rerun the measurement and our recipes of stored entries timed while other jobs shared the cores."""
    for entry in _load():
        if entry["cell"] not in cells or entry["image_size"] != image_size or entry.get("ours_rerun"):
            continue
        print(f"{entry['cell']} seed {entry['seed']}: our recipes again ...", flush=True)
        fresh = _child(entry["cell"], entry["seed"], image_size, "--skip-peer")
        _update(entry, lambda stored: (stored["recipes"].update(fresh["recipes"]),
                                       stored.update(measure=fresh["measure"], ours_rerun=True)))
        print("  " + ", ".join(f"{k} {v['accuracy']:.3f}/{v['seconds']:.0f}s" for k, v in fresh["recipes"].items()),
              flush=True)


def _load() -> list[dict]:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else []


def _save(entries: list[dict]) -> None:
    from keras_transfer.core.files import atomic_write_text

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(RESULTS, json.dumps(entries, indent=1) + "\n")


def run_matrix(cells: list[str], seeds: list[int], big_seeds: list[int], image_size: int) -> None:
    """Run each missing (cell, seed) in its own process, so one's traces and memory never touch the next."""
    for cell in cells:
        for seed in (big_seeds if cell.endswith("@all") else seeds):
            if any(e["cell"] == cell and e["seed"] == seed and e["image_size"] == image_size for e in _load()):
                continue
            print(f"{cell} seed {seed} ...", flush=True)
            started = time.perf_counter()
            entry = _child(cell, seed, image_size)
            _save(_load() + [entry])
            print(f"  done in {time.perf_counter() - started:.0f} s: " + ", ".join(
                f"{k} {v['accuracy']:.3f}/{v['seconds']:.0f}s" for k, v in entry["recipes"].items()), flush=True)


def auto_pick(entry: dict) -> str:
    """The recipe `decide` picks from this entry's measurements."""
    from keras_transfer.features.advisor import decide

    m = entry["measure"]
    return decide(m["per_class"], m["probe_gap"], m["bn_shift"]).recipe.replace("linear_probe", "solution2")  # the results' name


def report(figure: Path) -> None:
    """Mean and spread per cell and recipe, auto's pick, the goals; a figure of accuracy against time."""
    import numpy as np

    entries = _load()
    cells = [c for c in CELLS if any(e["cell"] == c for e in entries)]
    rows, failures = {}, []
    for cell in cells:
        mine = [e for e in entries if e["cell"] == cell]
        table = {}
        for recipe in RECIPES:
            acc = [e["recipes"][recipe]["accuracy"] for e in mine]
            sec = [e["recipes"][recipe]["seconds"] for e in mine]
            table[recipe] = (np.mean(acc), np.std(acc), np.mean(sec))
        picks = [auto_pick(e) for e in mine]
        acc = [e["recipes"][p]["accuracy"] for e, p in zip(mine, picks)]
        sec = [e["recipes"][p]["seconds"] + (0 if p == "solution2" else e["measure"]["measure_seconds"])
               for e, p in zip(mine, picks)]
        table["auto"] = (np.mean(acc), np.std(acc), np.mean(sec))
        rows[cell] = (table, picks, len(mine))
        # The most accurate recipe, the faster one on a tie.
        ours_best = max(("head", "top", "full", "solution2"), key=lambda r: (round(table[r][0], 4), -table[r][2]))
        best = max(("head", "top", "full", "solution2", "keras_guide"), key=lambda r: (round(table[r][0], 4), -table[r][2]))
        peer = table["keras_guide"]
        if round(table["auto"][0], 4) < round(table[best][0] - 0.01, 4):
            failures.append(f"{cell}: auto {table['auto'][0]:.1%} is more than 1 point below {best} {table[best][0]:.1%}")
        # Accuracies are compared at a tenth of a test image (the peer's come from Keras in float32).
        if round(table[ours_best][0], 4) < round(peer[0], 4) or table[ours_best][2] > peer[2] / 3:
            failures.append(f"{cell}: our best ({ours_best}) {table[ours_best][0]:.1%} in {table[ours_best][2]:.0f} s "
                            f"vs the peer {peer[0]:.1%} in {peer[2]:.0f} s")

    header = "| cell | seeds | " + " | ".join(LABELS[r] for r in (*RECIPES, "auto")) + " | auto picked |"
    print(header)
    print("|---|---:|" + "---:|" * (len(RECIPES) + 1) + "---|")
    for cell, (table, picks, n) in rows.items():
        cells_text = []
        for recipe in (*RECIPES, "auto"):
            mean, spread, seconds = table[recipe]
            cells_text.append(f"{100 * mean:.1f}" + (f" ± {100 * spread:.1f}" if n > 1 else "") + f" ({seconds:.0f} s)")
        print(f"| {cell} | {n} | " + " | ".join(cells_text) + f" | {', '.join(sorted(set(picks)))} |")
    print("\ngoals: " + ("all met" if not failures else "missed:\n  " + "\n  ".join(failures)))
    _plot(rows, figure)


def _plot(rows: dict, path: Path) -> None:
    from keras_transfer.core.plots import new_figure, save_figure

    fig, axes = new_figure(1, len(rows), size=(3.6 * len(rows), 3.8), squeeze=False)
    for ax, (cell, (table, _, _)) in zip(axes[0], rows.items()):
        for recipe in (*RECIPES, "auto"):
            mean, spread, seconds = table[recipe]
            ax.errorbar(seconds, 100 * mean, yerr=100 * spread, fmt="*" if recipe == "auto" else "o",
                        markersize=13 if recipe == "auto" else 6, label=LABELS[recipe], capsize=3,
                        markerfacecolor="none" if recipe == "auto" else None)
        ax.set_xlim(left=0)
        ax.set_title(cell)
        ax.set_xlabel("wall time, s")
    axes[0][0].set_ylabel("test accuracy, %")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    save_figure(fig, path)
    print(f"figure: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="run the missing cells of the matrix")
    run_p.add_argument("--cells", default=",".join(CELLS))
    run_p.add_argument("--seeds", default="0,1,2", help="seeds of the small cells")
    run_p.add_argument("--big-seeds", default="0", help="seeds of the all-data cells")
    run_p.add_argument("--image-size", type=int, default=96)
    run_p.add_argument("--redo-peer", action="store_true", help="rerun the peer of entries stored before its fix")
    run_p.add_argument("--redo-ours", action="store_true",
                       help="rerun the measurement and our recipes of entries timed on shared cores")
    one_p = sub.add_parser("one", help="one cell and seed, printed as JSON (run calls it)")
    one_p.add_argument("cell")
    one_p.add_argument("seed", type=int)
    one_p.add_argument("--image-size", type=int, default=96)
    one_p.add_argument("--only-peer", action="store_true")
    one_p.add_argument("--skip-peer", action="store_true")
    curve_p = sub.add_parser("curve", help="every epoch's val and test accuracy of the staged recipe, to curves.json")
    curve_p.add_argument("cell")
    curve_p.add_argument("seed", type=int)
    curve_p.add_argument("--image-size", type=int, default=96)
    stop_p = sub.add_parser("stopping", help="replay min_gain_per_minute on the stored curves")
    stop_p.add_argument("--thresholds", default="0,0.25,0.5,1,2,4")
    stop_p.add_argument("--stage", default="full")
    stop_p.add_argument("--weigh-first", action="store_true", help="weigh the stage's first epoch too")
    report_p = sub.add_parser("report", help="the table and figure from the stored results")
    report_p.add_argument("--figure", type=Path, default=HERE.parent / "docs" / "figures" / "recipes.png")
    args = parser.parse_args()
    if args.command == "run":
        cells = args.cells.split(",")
        if any(c.startswith("flowers5") for c in cells) and not FLOWERS.is_dir():
            sys.exit(f"no flower photos at {FLOWERS}; pass --cells digits@5,digits@all")
        if args.redo_peer:
            redo_peer(cells, args.image_size)
        if args.redo_ours:
            redo_ours(cells, args.image_size)
        run_matrix(cells, [int(s) for s in args.seeds.split(",")], [int(s) for s in args.big_seeds.split(",")],
                   args.image_size)
    elif args.command == "stopping":
        stopping([float(t) for t in args.thresholds.split(",")], args.stage, args.weigh_first)
    elif args.command == "curve":
        entry = curve(args.cell, args.seed, args.image_size)
        stored = [e for e in (json.loads(CURVES.read_text()) if CURVES.exists() else [])
                  if (e["cell"], e["seed"], e["image_size"]) != (args.cell, args.seed, args.image_size)]
        from keras_transfer.core.files import atomic_write_text

        atomic_write_text(CURVES, json.dumps(stored + [entry], indent=1) + "\n")
        for row in entry["epochs"]:
            print(f"{row['stage']:5s} {row['epoch']:2d} {row['seconds']:7.1f} s  val {row['val_accuracy']:.3f}  "
                  f"test {row['test_accuracy']:.3f}")
        print("stage ends:", entry["stage_ends"])
    elif args.command == "one":
        print(json.dumps(keras_guide(args.cell, args.seed, args.image_size) if args.only_peer
                         else one(args.cell, args.seed, args.image_size, peer=not args.skip_peer)))
    else:
        report(args.figure)


if __name__ == "__main__":
    main()
