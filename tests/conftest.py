"""Shared test set-up: TensorFlow quiet and on Keras 3's TensorFlow backend."""

import os

# Before TensorFlow is imported anywhere: no C++ info/warning logs, and the
# backend this package requires.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")  # for child processes

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from keras_linreg_cli import import_tensorflow_quietly  # noqa: E402

# TensorFlow's C++ start-up lines ignore TF_CPP_MIN_LOG_LEVEL; under pytest-xdist
# they would reach the terminal from every worker.
import_tensorflow_quietly()

import tensorflow as tf  # noqa: E402

tf.get_logger().setLevel("ERROR")


@pytest.fixture
def tutorial_data():
    """The tutorial's data (one fixed draw): x = linspace(0, 10, 100), y = x + N(0, 1)."""
    from keras_linreg_cli.demo import tutorial_data

    return tutorial_data(seed=0)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def pytest_collection_modifyitems(config, items):
    """The slow tests (servers, worker processes, a wheel build) first.

    Under pytest-xdist (`./scripts/test` runs 2 workers) the long tests then overlap
    the many short ones instead of running alone at the end. Order is otherwise kept.
    """
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture
def keras_fit_calls(monkeypatch):
    """The models `keras.Model.fit` (Keras' own loop, not the fast path) ran for, in
    order; Keras' `fit` still runs. Shows which path a `LinearRegression.fit` took."""
    import functools

    import keras

    calls = []
    keras_fit = keras.Model.fit

    @functools.wraps(keras_fit)
    def recording_fit(self, *args, **kwargs):
        calls.append(self)
        return keras_fit(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", recording_fit)
    return calls
