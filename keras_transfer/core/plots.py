"""Figures without pyplot's global state: every plot of the toolkit is a `matplotlib.figure.Figure`.

A `Figure` made directly (not through `pyplot`) needs no backend switch, is never registered with
pyplot's figure manager, and so cannot leak between calls or fight a notebook's inline backend. A
notebook shows the returned figure by leaving it as a cell's last value.

Every string on a figure is drawn literally: class names, file names and layer names come from
users, and matplotlib would read `$5_$10` (a price band) as mathtext and fail to draw the figure.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

# Set while a figure is laid out and drawn, so tick labels made at draw time are literal too.
LITERAL_TEXT = {"text.parse_math": False, "text.usetex": False}


def new_figure(rows: int = 1, cols: int = 1, *, size: tuple[float, float] = (6, 4), squeeze: bool = True,
               **subplot_kw) -> tuple[Figure, object]:
    """A fresh Figure with a grid of axes (as `plt.subplots` returns them), outside pyplot."""
    fig = Figure(figsize=size)
    axes = fig.subplots(rows, cols, squeeze=squeeze, subplot_kw=subplot_kw or None)
    return fig, axes


def literal_text(fig: Figure) -> Figure:
    """Make every text on `fig` (titles, labels, tick labels, legends) literal: no mathtext, no LaTeX."""
    from matplotlib.text import Text

    for text in fig.findobj(Text):
        text.set_parse_math(False)
        text.set_usetex(False)
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Lay out `fig` and write it atomically to `path` (PNG unless the suffix says otherwise).

    All text is drawn literally (see `literal_text`), so no user string can stop the figure.
    """
    import matplotlib

    from keras_transfer.core.files import atomic_file

    with matplotlib.rc_context(LITERAL_TEXT):
        literal_text(fig)
        fig.tight_layout()
        return atomic_file(Path(path), lambda tmp: fig.savefig(tmp, dpi=dpi))
