"""What a recorded split saves: test images that a re-split on `--resume` would move into training,
and what recording and reading the split costs.

A user starts a run on `--start` photos per class of flowers5, adds `--added` more per class while
it is interrupted, and resumes. Before `split.json`, the resume split the grown folder again with
the same seed; here that re-split is done for each seed, and the share of the first split's test
images that it puts into training is counted (the run then trains on them and scores them as
test). With the recorded split the share is 0 by construction. The data is listed in CSV files
that point into the shared folder (nothing is copied). Then, on the whole of flowers5: the time
to write `split.json`, to rebuild the data from it (`recorded_data`, every file `stat`ed), and to
load it again with the scan manifest, and the file's size.

    python benchmarks/bench_resume_split.py [--data /work/shared/data/flowers5] [--start 20] [--added 10] [--seeds 0,1,2,3,4]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "resume_split.json"


def _csv(folder: Path, root: Path, per_class: int, name: str) -> Path:
    """A `path,label` CSV of the first `per_class` images (sorted) of every class folder of `root`."""
    lines = ["path,label"]
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for image in sorted(class_dir.iterdir())[:per_class]:
            lines.append(f"{image},{class_dir.name}")
    path = folder / name
    path.write_text("\n".join(lines) + "\n")
    return path


def moved_test_images(root: Path, start: int, added: int, seed: int, cache: Path) -> float:
    """Share of the first split's test images that a re-split of the grown data puts into training."""
    from keras_transfer.data import DataConfig, load_data

    with tempfile.TemporaryDirectory() as folder:
        splits = []
        for per_class in (start, start + added):
            csv = _csv(Path(folder), root, per_class, f"n{per_class}.csv")
            config = DataConfig(source=f"csv:{csv}", image_size=32, augment=(), seed=seed, cache_dir=str(cache))
            splits.append(load_data(config).splits)
    test_before = set(splits[0]["test"].paths)
    train_after = set(splits[1]["train"].paths)
    return len(test_before & train_after) / len(test_before)


def record_costs(root: Path, cache: Path) -> dict:
    """Seconds to write and read `split.json` for all of `root`, against a rescan with the manifest."""
    from keras_transfer.data import DataConfig, load_data
    from keras_transfer.data.fingerprint import recorded_data, write_split_record

    config = DataConfig(source=f"folder:{root}", image_size=128, augment=(), cache_dir=str(cache))
    load_data(config)  # the first scan fills the manifest
    started = time.perf_counter()
    bundle = load_data(config)
    rescan = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as folder:
        record = Path(folder) / "split.json"
        started = time.perf_counter()
        write_split_record(bundle, record)
        write = time.perf_counter() - started
        started = time.perf_counter()
        rebuilt = recorded_data(config, record, log=lambda _: None)
        read = time.perf_counter() - started
        size = record.stat().st_size
    same = all(rebuilt.splits[s].paths == [os.path.abspath(p) for p in bundle.splits[s].paths] for s in bundle.splits)
    return {"images": sum(len(s) for s in bundle.splits.values()), "split_json_bytes": size,
            "write_s": round(write, 4), "recorded_data_s": round(read, 4), "rescan_with_manifest_s": round(rescan, 4),
            "same_split": same}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/flowers5"))
    parser.add_argument("--start", type=int, default=20, help="photos per class when the run starts")
    parser.add_argument("--added", type=int, default=10, help="photos per class added before --resume")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    with tempfile.TemporaryDirectory() as cache:
        moved = {seed: moved_test_images(args.data, args.start, args.added, seed, Path(cache)) for seed in seeds}
        costs = record_costs(args.data, Path(cache))
    result = {
        "command": f"python benchmarks/bench_resume_split.py --start {args.start} --added {args.added} --seeds {args.seeds}",
        "data": str(args.data), "start_per_class": args.start, "added_per_class": args.added,
        "test_images_moved_to_train_by_a_resplit": {"per_seed": {str(k): round(v, 3) for k, v in moved.items()},
                                                     "mean": round(statistics.mean(moved.values()), 3),
                                                     "min": round(min(moved.values()), 3),
                                                     "max": round(max(moved.values()), 3)},
        "test_images_moved_with_split_json": 0.0,
        "record_costs": costs,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
