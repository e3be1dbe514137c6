"""`keras_linreg_cli.demo`: the tutorial's data and the raw-vs-standardized comparison.

The `keras-linreg demo` command itself is tested end to end in tests/test_cli.py.
"""

import numpy as np

from keras_linreg_cli.convergence_table import gradient_descent_epochs
from keras_linreg_cli.demo import STANDARDIZED_LEARNING_RATE, compare_standardized, tutorial_data


def test_tutorial_data_is_a_line_plus_seeded_unit_noise():
    x, y = tutorial_data(seed=0)
    assert x.dtype == y.dtype == np.float32 and x.shape == y.shape == (100,)
    np.testing.assert_array_equal(x, np.linspace(0, 10, 100).astype(np.float32))
    noise = y.astype(np.float64) - x
    # N(0, 1) on 100 draws: mean within 4 standard errors, std within 25%.
    assert abs(noise.mean()) < 0.4 and 0.75 < noise.std() < 1.25
    np.testing.assert_array_equal(tutorial_data(seed=0)[1], y)  # the seed fixes the draw
    assert not np.array_equal(tutorial_data(seed=1)[1], y)
    assert tutorial_data(seed=0, n=7)[0].shape == (7,)


def test_compare_standardized_matches_the_float64_reference(tutorial_data, capsys):
    x, y = tutorial_data
    raw, standardized = compare_standardized(x, y, 0.02, max_epochs=800)
    assert raw == gradient_descent_epochs(x, y, 0.02, max_epochs=800)
    assert standardized == gradient_descent_epochs(
        x, y, STANDARDIZED_LEARNING_RATE, standardize=True, max_epochs=800
    )
    assert 500 < raw <= 800 and standardized == 1  # 0.5: Newton's step on one feature
    out = capsys.readouterr().out.splitlines()
    assert out[1].split()[-2:] == [str(raw), "epochs"]
    assert out[2].split()[-2:] == ["1", "epoch"]


def test_compare_standardized_says_when_max_epochs_were_not_enough(tutorial_data, capsys):
    x, y = tutorial_data
    assert compare_standardized(x, y, 0.01, max_epochs=10) == (None, 1)
    assert "learning_rate=0.01   not within 10 epochs" in capsys.readouterr().out
