"""Figures without pyplot's global state: every plot of the toolkit is a `matplotlib.figure.Figure`.

A `Figure` made directly (not through `pyplot`) needs no backend switch, is never registered with
pyplot's figure manager, and so cannot leak between calls or fight a notebook's inline backend. A
notebook shows the returned figure by leaving it as a cell's last value.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure


def new_figure(rows: int = 1, cols: int = 1, *, size: tuple[float, float] = (6, 4), squeeze: bool = True,
               **subplot_kw) -> tuple[Figure, object]:
    """A fresh Figure with a grid of axes (as `plt.subplots` returns them), outside pyplot."""
    fig = Figure(figsize=size)
    axes = fig.subplots(rows, cols, squeeze=squeeze, subplot_kw=subplot_kw or None)
    return fig, axes


def save_figure(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Lay out `fig` and write it atomically to `path` (PNG unless the suffix says otherwise)."""
    from keras_transfer.files import atomic_file

    fig.tight_layout()
    return atomic_file(Path(path), lambda tmp: fig.savefig(tmp, dpi=dpi))
