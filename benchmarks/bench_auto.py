"""The one-liner on a user's small folder: `recipe: auto` against the 5-epoch head, over three domains.

A user with 20 photos per class runs `keras-transfer train photos/`: the toolkit carves
validation and test from those 20, and auto chooses on what is left. This benchmark does exactly
that. For each cell (domain @ images per class) and seed it draws the pool first, writes it as a
user's folder (or `.npz` for the digits), and runs, each as its own `keras-transfer train`
process with a cold feature cache, timed from start to exit:

- `head5`: the packaged photos config with only its head stage, 5 epochs, no early stopping (what
  a config naming only the data and the backbone gets): the baseline;
- `auto`: the one-liner itself, `keras-transfer train POOL`;
- `linear1` / `linear2` / `linear4`: a logistic regression on the top block's features, C by
  cross-validation, on one view, the image and its mirror, and those and their centred crops
  (the effect of the views alone);
- `full`: fine-tuning, the packaged photos config's three stages (head, top two blocks,
  everything) with their early stopping, whatever the data's size.

Every run's `model.keras` is then scored on the same external test set, which no recipe sees:
flowers5 photos held out from every pool (60 per class), eurosat5's own `test/` (100 per class),
and digits held out from every pool (50 per class). Photos run at 224x224, the digits at 96x96.
Results accumulate in `benchmarks/results/auto.json` (one entry per cell, seed and recipe, written
atomically), so an interrupted matrix resumes; `report` prints the table and the goals and draws
`docs/figures/auto.png`.

    python benchmarks/bench_auto.py run [--cells flowers5@5,eurosat5@20,...] [--seeds 0,1,2] [--recipes auto,head5]
    python benchmarks/bench_auto.py report
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "auto.json"
SHARED = HERE.parents[1] / "shared" / "data"
DOMAINS = ("flowers5", "eurosat5", "digits")
SIZES = ("5", "20", "100")
RECIPES = ("head5", "auto", "linear1", "linear2", "linear4", "full")
VIEWS = ("full", "flip", "zoom", "flip_zoom")
TEST_PER_CLASS = {"flowers5": 60, "eurosat5": 100, "digits": 50}
IMAGE_SIZE = {"flowers5": 224, "eurosat5": 224, "digits": 96}


def _class_files(domain: str) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
    """(pool candidates, external test files) per class, in a fixed order."""
    if domain == "eurosat5":
        train, test = SHARED / "eurosat5" / "train", SHARED / "eurosat5" / "test"
        classes = sorted(p.name for p in train.iterdir() if p.is_dir())
        return ({c: sorted((train / c).iterdir()) for c in classes},
                {c: sorted((test / c).iterdir())[:TEST_PER_CLASS[domain]] for c in classes})
    root = SHARED / "flowers5"
    pool, test = {}, {}
    for c in sorted(p.name for p in root.iterdir() if p.is_dir()):
        files = sorted((root / c).iterdir())
        random.Random(123).shuffle(files)
        test[c], pool[c] = files[:TEST_PER_CLASS[domain]], files[TEST_PER_CLASS[domain]:]
    return pool, test


def _digits() -> tuple[object, object, object, object]:
    """(pool images, pool labels, test images, test labels): 50 digits per class held out."""
    import numpy as np
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.repeat(np.repeat((digits.images * (255.0 / 16.0)).astype("uint8"), 12, axis=1), 12, axis=2)
    images = np.stack([images] * 3, axis=-1)
    rng = np.random.default_rng(123)
    test = np.concatenate([rng.permutation(np.flatnonzero(digits.target == c))[:TEST_PER_CLASS["digits"]]
                           for c in range(10)])
    rest = np.setdiff1d(np.arange(len(images)), test)
    return images[rest], digits.target[rest], images[test], digits.target[test]


def _write_pool(domain: str, per_class: str, seed: int, folder: Path) -> tuple[str, Path]:
    """The user's data (a folder, or an .npz for the digits) and the external test set, under `folder`."""
    import numpy as np

    if domain == "digits":
        x, y, tx, ty = _digits()
        rng = np.random.default_rng(seed)
        keep = np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[:int(per_class)] if per_class != "all"
                                       else np.flatnonzero(y == c) for c in range(10)]))
        np.savez(folder / "pool.npz", x=x[keep], y=y[keep])
        np.savez(folder / "test.npz", x=tx, y=ty)
        return f"npz:{folder / 'pool.npz'}", folder / "test.npz"
    pool, test = _class_files(domain)
    for name, files in pool.items():
        files = list(files)
        random.Random(seed).shuffle(files)
        (folder / "pool" / name).mkdir(parents=True)
        for f in files if per_class == "all" else files[:int(per_class)]:
            shutil.copyfile(f, folder / "pool" / name / f.name)
    for name, files in test.items():
        (folder / "test" / name).mkdir(parents=True)
        for f in files:
            shutil.copyfile(f, folder / "test" / name / f.name)
    return f"folder:{folder / 'pool'}", folder / "test"


def _config(recipe: str, domain: str, source: str, seed: int, folder: Path) -> list[str]:
    """The train command's arguments for `recipe`."""
    import yaml

    from keras_transfer.config import packaged_config

    size = IMAGE_SIZE[domain]
    common = ["--set", f"data.image_size={size}", "--set", f"data.seed={seed}", "--set", f"training.seed={seed}"]
    if recipe == "auto":
        return [source, *common]
    raw = yaml.safe_load(packaged_config("photos").read_text())
    raw["data"]["source"] = source
    raw["training"]["recipe"] = "stages"
    if recipe == "head5":
        head = dict(raw["training"]["stages"][0], epochs=5)
        head.pop("early_stopping", None)
        raw["training"]["stages"] = [head]
    elif recipe != "full":
        raw["training"]["stages"] = raw["training"]["stages"][:1]
        raw["data"]["augment"] = []
        raw["model"]["head"] = {"type": "logistic", "views": list(VIEWS[:int(recipe[-1])])}
    path = folder / f"{recipe}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return ["--config", str(path), *common]


def _score(run_dir: Path, test: Path, domain: str) -> float:
    """Accuracy of the run's model.keras on the external test set (class order from labels.txt)."""
    code = f"""
import json, sys, numpy as np, keras
from keras_transfer import register_serializables
from keras_transfer.data import DataConfig, load_data
register_serializables()
model = keras.saving.load_model({str(run_dir / 'model.keras')!r}, safe_mode=True)
labels = open({str(run_dir / 'labels.txt')!r}).read().splitlines()
data = load_data(DataConfig(source={(('npz:' if domain == 'digits' else 'folder:') + str(test))!r},
                 image_size={IMAGE_SIZE[domain]}, val_split=0.0, test_split=0.0, augment=()))
names = data.class_names
hits = total = 0
for x, y in data.dataset("train", training=False):
    p = np.asarray(model.predict(x, verbose=0)).argmax(axis=1)
    hits += int(sum(labels[i] == names[t] for i, t in zip(p, np.asarray(y))))
    total += len(p)
print(json.dumps({{"accuracy": hits / total, "examples": total}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["accuracy"]


def _load() -> list[dict]:
    return json.loads(RESULTS.read_text()) if RESULTS.is_file() else []


def _save(rows: list[dict]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(rows, indent=1))
    os.replace(tmp, RESULTS)


def run(cells: list[str], seeds: list[int], recipes: list[str]) -> None:
    rows = _load()
    done = {(r["cell"], r["seed"], r["recipe"]) for r in rows}
    for cell in cells:
        domain, per_class = cell.split("@")
        for seed in seeds:
            todo = [r for r in recipes if (cell, seed, r) not in done]
            if not todo:
                continue
            with tempfile.TemporaryDirectory(prefix="bench-auto-") as tmp:
                folder = Path(tmp)
                source, test = _write_pool(domain, per_class, seed, folder)
                for recipe in todo:
                    env = {**os.environ, "KT_CACHE_DIR": str(folder / f"cache-{recipe}")}  # a cold cache each
                    run_dir = folder / f"run-{recipe}"
                    started = time.perf_counter()
                    proc = subprocess.run([sys.executable, "-m", "keras_transfer.train",
                                           *_config(recipe, domain, source, seed, folder), "--output-dir", str(run_dir)],
                                          capture_output=True, text=True, env=env)
                    seconds = time.perf_counter() - started
                    if proc.returncode:
                        print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
                        raise SystemExit(f"{cell} seed {seed} {recipe} failed")
                    said = [line for line in proc.stdout.splitlines() if line.startswith(("recipe auto:", "  - "))]
                    accuracy = _score(run_dir, test, domain)
                    row = {"cell": cell, "seed": seed, "recipe": recipe, "test_accuracy": accuracy,
                           "seconds": round(seconds, 1), "auto_said": said}
                    rows.append(row)
                    _save(rows)
                    print(f"{cell} seed {seed} {recipe:8s} test {accuracy:.4f} in {seconds:.0f} s", flush=True)
                    for line in said[:2]:
                        print("    " + line[:200], flush=True)


def report() -> None:
    import numpy as np

    rows = _load()
    def order(cell):
        domain, size = cell.split("@")
        return (DOMAINS.index(domain), 10 ** 9 if size == "all" else int(size))

    cells = sorted({r["cell"] for r in rows}, key=order)
    shown = [r for r in RECIPES if any(x["recipe"] == r for x in rows)]
    print("| data, images per class | seeds | " + " | ".join(shown) + " | auto chose |")
    print("|---|---:|" + "---:|" * len(shown) + "---|")
    misses = []
    for cell in cells:
        by = {r: [x for x in rows if x["cell"] == cell and x["recipe"] == r] for r in RECIPES}
        seeds = sorted({x["seed"] for x in rows if x["cell"] == cell})
        parts = []
        for r in shown:
            if not by[r]:
                parts.append("—")
                continue
            acc = [100 * x["test_accuracy"] for x in by[r]]
            sec = np.mean([x["seconds"] for x in by[r]])
            spread = f" ± {np.std(acc):.1f}" if len(acc) > 1 else ""
            parts.append(f"{np.mean(acc):.1f}{spread} ({sec:.0f} s)")
        chose = sorted({_chose(x["auto_said"]) for x in by["auto"]})
        print(f"| {cell} | {len(seeds)} | " + " | ".join(parts) + f" | {'; '.join(chose)[:90]} |")
        if by["auto"] and by["head5"]:
            a = np.mean([x["test_accuracy"] for x in by["auto"]])
            h = np.mean([x["test_accuracy"] for x in by["head5"]])
            best = max(np.mean([x["test_accuracy"] for x in by[r]]) for r in RECIPES if by[r])
            ta = np.mean([x["seconds"] for x in by["auto"]])
            th = np.mean([x["seconds"] for x in by["head5"]])
            if a < best - 0.01 or a < h - 0.01 or ta > th:
                misses.append(f"{cell}: auto {100 * a:.1f} vs head5 {100 * h:.1f}, best {100 * best:.1f}; "
                              f"{ta:.0f} s vs {th:.0f} s")
    print("\ngoals (auto within 1 point of the best, not 1 point below head5, no slower than head5):",
          "all met" if not misses else "missed in")
    for miss in misses:
        print("  - " + miss)
    _plot(rows, cells)


def _chose(said: list[str]) -> str:
    """What auto's log says it chose: `top` (a block or blocks, for feature extraction) or the stages."""
    import re

    for line in said:
        found = re.search(r"\) on (\S+), C = ", line)
        if found:
            return found.group(1)
        if line.startswith("recipe auto: stages"):
            return line.split(": ", 1)[1].split(" (")[0]
    return "?"


def _plot(rows: list[dict], cells: list[str]) -> None:
    """docs/figures/auto.png: test accuracy per cell for each recipe, mean and spread over seeds."""
    import numpy as np

    from keras_transfer.core.plots import new_figure, save_figure

    fig, ax = new_figure(size=(max(6, 1.1 * len(cells) + 2), 4))
    shown = [r for r in RECIPES if any(x["recipe"] == r for x in rows)]
    width = 0.8 / len(shown)
    for i, recipe in enumerate(shown):
        means, spreads = [], []
        for cell in cells:
            acc = [100 * x["test_accuracy"] for x in rows if x["cell"] == cell and x["recipe"] == recipe]
            means.append(np.mean(acc) if acc else np.nan)
            spreads.append(np.std(acc) if acc else 0.0)
        ax.bar(np.arange(len(cells)) + (i - (len(shown) - 1) / 2) * width, means, width, yerr=spreads,
               label=recipe, capsize=2)
    ax.set_xticks(np.arange(len(cells)), [c.replace("@", "\n") for c in cells], fontsize=8)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("The one-liner on a user's folder: auto against the 5-epoch head")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    save_figure(fig, HERE.parent / "docs" / "figures" / "auto.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    go = sub.add_parser("run")
    go.add_argument("--cells", default=",".join(f"{d}@{s}" for s in SIZES for d in DOMAINS))
    go.add_argument("--seeds", default="0,1,2")
    go.add_argument("--recipes", default=",".join(RECIPES))
    sub.add_parser("report")
    args = parser.parse_args()
    if args.command == "run":
        run(args.cells.split(","), [int(s) for s in args.seeds.split(",")], args.recipes.split(","))
    else:
        report()


if __name__ == "__main__":
    main()
