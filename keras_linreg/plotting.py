"""A figure of a fit (PNG, PDF or SVG): the data and the fitted line, and the loss curve."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from keras_linreg import _atomic

_FORMATS = ("png", "pdf", "svg")


def draw_fit(axes, x: np.ndarray, y: np.ndarray, y_pred: np.ndarray) -> None:
    """Draws a fit on matplotlib `axes`.

    With one feature: the data and the fitted line. With several: the
    predictions against the targets, and the diagonal `predicted = actual`.
    Non-finite predictions (a diverged fit) are left out of the diagonal's range.
    """
    x = np.asarray(x, dtype=np.float64)
    x = x.reshape(len(x), -1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    if x.shape[1] == 1:
        order = np.argsort(x[:, 0])
        axes.scatter(x[:, 0], y, s=8, alpha=0.6, label="data")
        axes.plot(x[order, 0], y_pred[order], color="C3", label="fit")
        axes.set_xlabel("x")
        axes.set_ylabel("y")
        axes.legend(loc="best")
        return
    axes.scatter(y, y_pred, s=8, alpha=0.6)
    finite = np.concatenate([y, y_pred])
    finite = finite[np.isfinite(finite)]
    if finite.size:
        low, high = finite.min(), finite.max()
        axes.plot([low, high], [low, high], color="C3", label="predicted = actual")
        axes.legend(loc="best")
    axes.set_xlabel("actual y")
    axes.set_ylabel("predicted y")


def plot_fit(
    path: str,
    x: np.ndarray,
    y: np.ndarray,
    y_pred: np.ndarray,
    losses: Sequence[float],
    val_losses: Sequence[float] | None = None,
    title: str = "",
) -> None:
    """Writes a two-panel figure to `path`, atomically (`_atomic.write_atomically`).

    The format is the one `path`'s extension names: `.png` (100 dpi), `.pdf` or
    `.svg` (anything else is refused).

    Left: the fit (`draw_fit`). Right: the loss per epoch (log scale), and the
    validation loss when given.
    """
    fmt = os.path.splitext(os.fspath(path))[1].lower().lstrip(".")
    if fmt not in _FORMATS:
        raise ValueError(
            "Received an invalid value for `path`, expected a file ending in .png, .pdf "
            f"or .svg (the format is taken from the extension). Received: path={path!r}"
        )
    # The Agg canvas directly: no pyplot, so the caller's backend is untouched.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.2))
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2)
    draw_fit(left, x, y, y_pred)
    left.set_title(title or "fit")
    epochs = np.arange(len(losses))
    right.plot(epochs, losses, label="loss")
    if val_losses is not None:
        right.plot(epochs, val_losses, label="val_loss")
    right.set_yscale("log")
    right.set_xlabel("epoch")
    right.set_ylabel("mean squared error")
    right.legend()
    right.set_title("loss")
    figure.tight_layout()
    # Missing parents are created; an existing file is replaced.
    _atomic.write_atomically(
        path, lambda temporary: figure.savefig(temporary, format=fmt, dpi=100),
        overwrite=True, suffix="." + fmt, argument="path",
    )
