"""Every notebook runs top to bottom in small mode (KT_SMALL=1), shows its figures inline, and the
committed ones carry no outputs."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_six_notebooks_committed_without_outputs():
    assert [p.stem for p in NOTEBOOKS] == ["01_quickstart", "02_feature_extractor", "03_which_layer",
                                          "04_digits_transfer", "05_export_and_serve", "06_unlabeled_images"]
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        code = [cell for cell in notebook.cells if cell.cell_type == "code"]
        assert code and all(not cell.outputs and cell.execution_count is None for cell in code), path.name


def test_notebooks_import_notebook_support_and_draw_without_pyplot():
    for path in NOTEBOOKS:
        source = "\n".join(cell.source for cell in nbformat.read(path, as_version=4).cells)
        assert "keras_transfer._notebook" in source and "keras_transfer.examples" not in source, path.name
        assert "matplotlib.pyplot" not in source and "plt." not in source, path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom_in_small_mode_and_shows_its_figures(path, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("KT_SMALL", "1")
    monkeypatch.setenv("KT_FIGURES", str(tmp_path / "figures"))
    notebook = nbformat.read(path, as_version=4)
    # A cell that raises (the digits notebook asserts its claim in small mode) fails the test.
    # The kernel inherits this process's environment: KT_SMALL, KT_FIGURES and the isolated caches,
    # and KT_SEED when set (default 0), which is how the digits claim's spread across seeds is measured.
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    printed = "".join(out.get("text", "") for out in outputs if out.get("name") == "stdout")
    print(printed)  # the notebook's own lines, shown by `pytest -rP`
    assert "small mode" in printed
    saved = list((tmp_path / "figures").glob("*.png"))
    assert saved or path.stem == "05_export_and_serve"
    # Each saved figure is also shown in the notebook, not only written to $KT_FIGURES.
    shown = [out for out in outputs if "image/png" in out.get("data", {})]
    assert len(shown) >= len(saved), (path.stem, len(shown), [p.name for p in saved])
