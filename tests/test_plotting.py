"""`keras_linreg.plotting`: the fit PNG."""

import os

import numpy as np

from keras_linreg.plotting import plot_fit


def test_plot_fit_writes_a_png_atomically(tmp_path, tutorial_data):
    x, y = tutorial_data
    for features in (x, np.c_[x, x**2]):
        path = tmp_path / f"fit{features.ndim}.png"
        plot_fit(str(path), features, y, y * 0.9, [3.0, 2.0, 1.0], [3.5, 2.5, 1.5])
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(tmp_path)) == ["fit1.png", "fit2.png"]  # no temporary files left
