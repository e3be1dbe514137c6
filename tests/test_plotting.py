"""`keras_linreg.plotting`: the PNG of a fit, written atomically with the umask's mode."""

import os
import stat

import numpy as np
import pytest

from keras_linreg.plotting import plot_fit

_PNG = b"\x89PNG\r\n\x1a\n"


def test_plot_fit_writes_a_png_atomically(tmp_path, tutorial_data):
    x, y = tutorial_data
    for features in (x, np.c_[x, x**2]):
        path = tmp_path / f"fit{features.ndim}.png"
        plot_fit(str(path), features, y, y * 0.9, [3.0, 2.0, 1.0], [3.5, 2.5, 1.5])
        assert path.read_bytes()[:8] == _PNG
    assert sorted(os.listdir(tmp_path)) == ["fit1.png", "fit2.png"]  # no temporary files left


@pytest.fixture
def umask():
    previous = os.umask(0o027)
    try:
        yield 0o027
    finally:
        os.umask(previous)


def test_a_plot_gets_the_permissions_of_a_plain_open(tmp_path, tutorial_data, umask):
    """A temporary-file rename used to leave plots at 0600, unreadable to the group."""
    x, y = tutorial_data
    path = tmp_path / "new" / "fit.png"  # missing parents are created
    plot_fit(path, x, y, y, [2.0, 1.0])
    assert path.read_bytes()[:8] == _PNG
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask
    before = path.stat().st_size
    plot_fit(path, x, y, y * 0.5, [2.0, 1.0, 0.5], title="again")  # replaced
    assert path.read_bytes()[:8] == _PNG and path.stat().st_size != before
    assert os.listdir(path.parent) == ["fit.png"]
