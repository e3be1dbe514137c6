"""`.keras` files written by earlier versions load, quietly, with equal predictions.

The fixtures in `tests/fixtures/legacy_keras/` were written by main 2541842
(raw, standardized, schedule-rate models; the statistics were then the model's
own variables 2-4) and by 0.1.0 (raw), with `make_fixtures.py`; each
`*-expected.json` holds the probe inputs and the predictions and step counters
the writing version computed.
"""

import io
import json
import pathlib
import shutil
import warnings
import zipfile

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_linreg
from keras_linreg.standardization import Standardization

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "legacy_keras"


def _cases():
    cases = []
    for expected_path in sorted(FIXTURES.glob("*-expected.json")):
        expected = json.loads(expected_path.read_text())
        for name, values in expected["files"].items():
            cases.append(
                pytest.param(name, np.asarray(expected["probe_x"], "float32"), values, id=name)
            )
    return cases


def _load_quietly(path):
    """Loads `path`, asserting no warning at all (record=True: see test_saving)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = keras.models.load_model(path)
    assert [f"{w.category.__name__}: {w.message}" for w in caught] == []
    return model


def _fixture_training_data():
    """The rows `make_fixtures.py` trained on (its recipe, regenerated)."""
    rng = np.random.default_rng(7)
    scale = np.array([1.0, 10.0, 0.1], "float32")
    x = rng.normal(size=(64, 3)).astype("float32") * scale + np.array([5.0, -3.0, 100.0], "float32")
    return x


def test_every_fixture_is_tested():
    names = {p.name for p in FIXTURES.glob("*.keras")}
    assert names == {case.values[0] for case in CASES}
    assert len(names) == 4


CASES = _cases()


@pytest.mark.parametrize("name, probe, expected", CASES)
def test_old_file_loads_quietly_with_equal_predictions(name, probe, expected):
    model = _load_quietly(FIXTURES / name)
    assert type(model) is keras_linreg.LinearRegression
    assert model.standardize is ("raw" not in name)
    # Written before `fit_intercept` existed: the missing key means an intercept.
    assert model.fit_intercept is True
    assert any("intercept" in v.name for v in model.trainable_variables)
    predictions = model.predict(probe, verbose=0)
    np.testing.assert_allclose(predictions, expected["predictions"], rtol=1e-6)
    assert int(model.optimizer.iterations.numpy()) == expected["iterations"]
    # The raw-unit parameters (float64) reproduce the predictions.
    slope, intercept = model.get_parameters()
    np.testing.assert_allclose(
        probe.astype(np.float64) @ slope + intercept, expected["predictions"], rtol=1e-5
    )
    if model.standardize:
        # The statistics landed in the layer, as computed from the training rows.
        x64 = _fixture_training_data().astype(np.float64)
        assert isinstance(model.standardization, Standardization)
        assert int(model.adapted_rows.numpy()) == 64
        np.testing.assert_allclose(model.feature_mean.numpy(), x64.mean(axis=0), rtol=1e-6)
        np.testing.assert_allclose(model.feature_std.numpy(), x64.std(axis=0), rtol=1e-5)


@pytest.mark.parametrize("name, probe, expected", CASES)
def test_old_file_saved_again_round_trips(name, probe, expected, tmp_path):
    model = _load_quietly(FIXTURES / name)
    path = tmp_path / "again.keras"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        weights = h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r")
        assert len(weights["vars"]) == 2  # the model's own: w and b
        assert ("layers/standardization/vars" in weights) is model.standardize
    again = _load_quietly(path)
    for a, b in zip(again.weights, model.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(again.predict(probe, verbose=0), model.predict(probe, verbose=0))
    assert int(again.optimizer.iterations.numpy()) == expected["iterations"]


def test_old_standardized_file_resumes_training_without_adapt():
    model = _load_quietly(FIXTURES / "main-2541842-standardized.keras")
    x = _fixture_training_data()
    y = x @ np.array([2.0, -0.5, 3.0], "float32") + 1.5
    mean = model.feature_mean.numpy().copy()
    # Loaded statistics count as adapted: a dataset needs no `adapt`.
    model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(16), epochs=1, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 12 + 4
    np.testing.assert_array_equal(model.feature_mean.numpy(), mean)


def test_file_without_the_statistics_fails_loudly(tmp_path):
    """Only the old five-variable layout stands in for the layer's entry."""
    source = FIXTURES / "main-2541842-standardized.keras"
    broken = tmp_path / "broken.keras"
    shutil.copy(source, broken)
    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    buffer = io.BytesIO(members["model.weights.h5"])
    with h5py.File(buffer, "a") as weights:
        for key in ("2", "3", "4"):  # drop the statistics: w and b are left
            del weights["vars"][key]
    members["model.weights.h5"] = buffer.getvalue()
    with zipfile.ZipFile(broken, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(ValueError, match="'standardization' expected 3 variables, but received 0"):
        keras.models.load_model(broken)
