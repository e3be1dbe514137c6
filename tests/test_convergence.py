"""`keras_linreg.convergence.epochs_to_optimum`, against the float64 NumPy reference."""

import numpy as np

import keras_linreg
from keras_linreg_cli.convergence_table import gradient_descent_epochs


def test_an_uncompiled_model_is_compiled_and_stops_at_the_optimum(tutorial_data):
    x, y = tutorial_data
    model = keras_linreg.LinearRegression(learning_rate=0.1, standardize=True)
    epochs = keras_linreg.epochs_to_optimum(model, x, y)
    assert model.compiled and epochs == gradient_descent_epochs(x, y, 0.1, standardize=True)
    assert int(model.optimizer.iterations.numpy()) == epochs  # it stopped there
    slope, intercept = keras_linreg.least_squares(x, y)
    np.testing.assert_allclose(model.get_parameters()[0], slope, atol=1e-4)
    # Already there: 0 epochs, no further update.
    assert keras_linreg.epochs_to_optimum(model, x, y) == 0
    assert int(model.optimizer.iterations.numpy()) == epochs


def test_sample_weights_count_in_the_fit_and_the_optimum(rng):
    x = rng.normal(3.0, 2.0, size=(60, 2)).astype("float32")
    y = (x @ [1.5, -0.5] + 2.0 + rng.normal(0, 0.3, 60)).astype("float32")
    weights = rng.uniform(0.2, 3.0, 60)
    model = keras_linreg.LinearRegression(learning_rate=0.3, standardize=True)
    epochs = keras_linreg.epochs_to_optimum(model, x, y, sample_weight=weights)
    reference = gradient_descent_epochs(x, y, 0.3, standardize=True, sample_weight=weights)
    assert epochs is not None and abs(epochs - reference) <= 1  # float32 vs float64
    slope, intercept = keras_linreg.least_squares(x, y, weights)
    np.testing.assert_allclose(model.get_parameters()[0], slope, atol=1e-4)
    assert abs(model.get_parameters()[1] - intercept) <= 1e-4
