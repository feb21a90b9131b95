"""Regenerate the docs' figures: run every notebook in full mode and keep the PNGs it saves.

    python docs/make_figures.py [--notebooks 01_quickstart 04_digits_transfer] [--timeout 3600]

Full mode uses the real flower photos of ../shared/data/flowers5 when that folder exists (else
tfds:tf_flowers, which needs a download). Each notebook calls
`keras_transfer._notebook.save_figure(fig, name)`, which writes docs/figures/<name>.png
because this script sets KT_FIGURES. The executed notebooks are not kept: the committed ones
stay free of outputs.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--notebooks", nargs="*", default=None, help="names without .ipynb (default: all)")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    args = parser.parse_args()

    import nbformat
    from nbclient import NotebookClient

    os.environ.pop("KT_SMALL", None)
    os.environ["KT_FIGURES"] = str(ROOT / "docs" / "figures")
    photos = ROOT.parent / "shared" / "data" / "flowers5"
    if photos.is_dir():  # the kernels run in temporary folders, so say where the photos are
        os.environ.setdefault("KT_PHOTOS", str(photos))
    paths = sorted((ROOT / "notebooks").glob("*.ipynb"))
    if args.notebooks:
        paths = [p for p in paths if p.stem in args.notebooks]
    for path in paths:
        started = time.perf_counter()
        notebook = nbformat.read(path, as_version=4)
        with tempfile.TemporaryDirectory() as work:  # the notebooks' work/ folders go here
            NotebookClient(notebook, timeout=args.timeout, kernel_name="python3",
                           resources={"metadata": {"path": work}}).execute()
        print(f"{path.name}: {time.perf_counter() - started:.0f} s")
    print(f"figures in {os.environ['KT_FIGURES']}:", sorted(p.name for p in Path(os.environ["KT_FIGURES"]).glob("*.png")))


if __name__ == "__main__":
    main()
