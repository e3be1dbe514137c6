"""A PNG of a fit: the data with the fitted line (or predicted vs actual), and the loss curve."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence

import numpy as np


def plot_fit(
    path: str,
    x: np.ndarray,
    y: np.ndarray,
    y_pred: np.ndarray,
    losses: Sequence[float],
    val_losses: Sequence[float] | None = None,
    title: str = "",
) -> None:
    """Writes a two-panel PNG to `path`, atomically (a temporary file, then a rename).

    Left: with one feature, the data and the fitted line; with several, the
    predictions against the targets and the diagonal. Right: the loss per
    epoch (log scale), and the validation loss when given.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    if x.ndim == 1 or x.shape[1] == 1:
        column = x.reshape(-1)
        order = np.argsort(column)
        left.scatter(column, y, s=12, alpha=0.7, label="data")
        left.plot(column[order], y_pred[order], "r", linewidth=2, label="fit")
        left.set_xlabel("x")
        left.set_ylabel("y")
    else:
        left.scatter(y, y_pred, s=12, alpha=0.7, label="rows")
        low, high = float(min(y.min(), y_pred.min())), float(max(y.max(), y_pred.max()))
        left.plot([low, high], [low, high], "r", linewidth=1.5, label="y_pred = y")
        left.set_xlabel("actual")
        left.set_ylabel("predicted")
    left.legend()
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
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(suffix=".png", dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(handle, "wb") as stream:
            figure.savefig(stream, format="png", dpi=100)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
    finally:
        plt.close(figure)
