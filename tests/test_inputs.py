"""Bad in-memory data is refused before any update, with a message that says where."""

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import keras_linreg


def _model(n_features=3, **kwargs):
    model = keras_linreg.LinearRegression(
        n_features=n_features, slope_initializer="ones", intercept_initializer="ones", **kwargs
    )
    model.compile()
    return model


def _state(model):
    slope, intercept = model.get_parameters()
    return slope.copy(), intercept, int(model.optimizer.iterations.numpy())


def _data(rng, n=40, n_features=3):
    x = rng.normal(size=(n, n_features)).astype("float32")
    y = (x @ np.arange(1, n_features + 1) + 0.5).astype("float32")
    return x, y


AS_KINDS = {
    "numpy": lambda a: a,
    "list": lambda a: a.tolist(),
    "pandas": lambda a: pd.DataFrame(a) if a.ndim == 2 else pd.Series(a),
    "tensor": tf.constant,
}


@pytest.mark.parametrize("kind", sorted(AS_KINDS))
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_x_is_refused_naming_row_and_column(rng, kind, bad):
    x, y = _data(rng)
    x[7, 2] = bad
    x[9, 0] = bad  # a later one: the message names the first
    model = _model()
    before = _state(model)
    with pytest.raises(ValueError) as info:
        model.fit(AS_KINDS[kind](x), AS_KINDS[kind](y), epochs=2, verbose=0)
    message = str(info.value)
    assert "`x`" in message and "2 entries are NaN or ±inf" in message
    assert "row 7, column 2" in message and f"x[7, 2]={float(bad)!r}" in message
    after = _state(model)
    np.testing.assert_array_equal(after[0], before[0])
    assert after[1:] == before[1:]  # intercept and step counter untouched


@pytest.mark.parametrize("kind", sorted(AS_KINDS))
def test_non_finite_y_and_sample_weight_are_refused(rng, kind):
    x, y = _data(rng)
    bad_y = y.copy()
    bad_y[11] = np.nan
    model = _model()
    before = _state(model)
    convert = AS_KINDS[kind]
    with pytest.raises(ValueError, match=r"non-finite values in `y`.*row 11: y\[11\]=nan"):
        model.fit(convert(x), convert(bad_y), verbose=0)
    weights = np.ones(len(y), dtype="float32")
    weights[3] = np.inf
    with pytest.raises(
        ValueError, match=r"non-finite values in `sample_weight`.*row 3: sample_weight\[3\]=inf"
    ):
        model.fit(convert(x), convert(y), sample_weight=convert(weights), verbose=0)
    after = _state(model)
    np.testing.assert_array_equal(after[0], before[0])
    assert after[1:] == before[1:]


def test_pandas_column_and_feature_names_are_named(rng):
    x, y = _data(rng)
    x[5, 1] = np.nan
    frame = pd.DataFrame(x, columns=["area", "rooms", "age"])
    with pytest.raises(ValueError, match=r"row 5, column 1 \('rooms'\)"):
        _model().fit(frame, y, verbose=0)
    named = _model(feature_names=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"row 5, column 1 \('b'\)"):
        named.fit(x, y, verbose=0)


def test_non_finite_validation_data_is_refused(rng):
    x, y = _data(rng)
    val_y = y.copy()
    val_y[2] = np.nan
    model = _model()
    before = _state(model)
    with pytest.raises(ValueError, match=r"`validation_data\[1\]`.*row 2"):
        model.fit(x, y, validation_data=(x, val_y), epochs=2, verbose=0)
    np.testing.assert_array_equal(_state(model)[0], before[0])


def test_negative_sample_weight_is_refused(rng):
    x, y = _data(rng)
    weights = np.ones(len(y))
    weights[4] = -0.5
    with pytest.raises(ValueError, match=r"non-negative.*row 4: sample_weight\[4\]=-0.5"):
        _model().fit(x, y, sample_weight=weights, verbose=0)


def test_float64_beyond_float32_range_is_refused(rng):
    x, y = _data(rng)
    x = x.astype("float64")
    x[3, 0] = 1e300
    with pytest.raises(ValueError, match=r"float32 range.*row 3, column 0"):
        _model().fit(x, y, verbose=0)


@pytest.mark.parametrize("method", ["evaluate", "predict"])
def test_non_finite_x_is_refused_by_evaluate_and_predict(rng, method):
    x, y = _data(rng)
    x[0, 0] = np.nan
    model = _model()
    args = (x, y) if method == "evaluate" else (x,)
    with pytest.raises(ValueError, match=r"non-finite values in `x`.*row 0, column 0"):
        getattr(model, method)(*args, verbose=0)


@pytest.mark.parametrize("method", ["fit", "evaluate", "predict"])
def test_wrong_number_of_features_names_expected_and_received_shapes(rng, method):
    x, y = _data(rng, n_features=2)
    model = _model(n_features=3)
    args = (x, y) if method != "predict" else (x,)
    with pytest.raises(ValueError) as info:
        getattr(model, method)(*args, verbose=0)
    message = str(info.value)
    assert "n_features=3" in message
    assert "expected shape (n, 3), but received (n, 2)" in message
    assert "x.shape=(40, 2)" in message
    with pytest.raises(ValueError, match=r"expected shape \(n, 3\), but received \(n,\)"):
        getattr(model, method)(*((x[:, 0], y) if method != "predict" else (x[:, 0],)), verbose=0)


def test_features_checked_after_the_first_fit_built_the_model(rng):
    x, y = _data(rng, n_features=3)
    model = keras_linreg.LinearRegression()
    model.compile()
    model.fit(x, y, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"expected shape \(n, 3\), but received \(n, 4\)"):
        model.predict(np.ones((5, 4)), verbose=0)


def test_length_mismatch_names_both_lengths(rng):
    x, y = _data(rng)
    with pytest.raises(ValueError, match=r"`y` with 39 rows, but `x` has 40.*y.shape=\(39,\)"):
        _model().fit(x, y[:-1], verbose=0)
    with pytest.raises(ValueError, match=r"`sample_weight` with 41 rows, but `x` has 40"):
        _model().fit(x, y, sample_weight=np.ones(41), verbose=0)
    with pytest.raises(ValueError, match=r"`y` with 39 rows, but `x` has 40"):
        _model().evaluate(x, y[:-1], verbose=0)


def test_y_of_the_wrong_shape_is_refused(rng):
    x, y = _data(rng)
    expected = r"expected shape `\(n,\)` or `\(n, 1\)` with n=40.*\(40, 2\)"
    with pytest.raises(ValueError, match=expected):
        _model().fit(x, np.stack([y, y], axis=1), verbose=0)


def test_empty_data_is_refused():
    with pytest.raises(ValueError, match=r"empty `x` \(0 rows\).*x.shape=\(0, 3\)"):
        _model().fit(np.zeros((0, 3)), np.zeros(0), verbose=0)
    with pytest.raises(ValueError, match=r"empty `x`"):
        _model().predict(np.zeros((0, 3)), verbose=0)


@pytest.mark.parametrize(
    "x, expected",
    [
        (np.array([["1", "2", "3"]] * 4), r"received dtype <U1"),
        (np.array([[1.0, None, 3.0]] * 4, dtype=object), r"x\[0, 1\]=None"),
        (np.array([[1 + 2j, 0, 0]] * 4), r"received dtype complex128"),
        (pd.DataFrame({"a": [1.0] * 4, "b": ["x"] * 4, "c": [2] * 4}), r"column 'b' has dtype"),
    ],
)
def test_non_numeric_dtypes_are_refused(x, expected):
    with pytest.raises(ValueError, match=expected):
        _model().fit(x, np.zeros(4), verbose=0)


def test_integer_float64_and_list_inputs_are_cast_not_refused(rng):
    x = rng.integers(-5, 6, size=(30, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + 3.0  # float64
    weights = rng.integers(1, 4, size=30)  # integers
    results = []
    for xs, ys, ws in [
        (x, y, weights),
        (x.astype("float32"), y.astype("float32"), weights.astype("float32")),
        (x.tolist(), y.tolist(), weights.tolist()),
        (pd.DataFrame(x), pd.Series(y), pd.Series(weights)),
    ]:
        model = _model(learning_rate=0.01)
        model.fit(xs, ys, sample_weight=ws, batch_size=30, epochs=5, shuffle=False, verbose=0)
        results.append(model.get_parameters())
        model.evaluate(xs, ys, verbose=0)
        assert model.predict(xs, verbose=0).shape == (30,)
    for slope, intercept in results[1:]:
        np.testing.assert_allclose(slope, results[0][0], rtol=1e-6)
        assert intercept == pytest.approx(results[0][1], rel=1e-6)


def test_positional_arguments_are_checked_too(rng):
    x, y = _data(rng)
    model = _model()
    # keras.Model.fit(x, y, batch_size, epochs, verbose, callbacks, validation_split,
    # validation_data, shuffle, class_weight, sample_weight)
    weights = np.ones(len(y))
    weights[1] = np.nan
    with pytest.raises(ValueError, match=r"`sample_weight`.*row 1"):
        model.fit(x, y, 40, 1, 0, None, 0.0, None, False, None, weights)
    history = model.fit(x, y, 40, 3, 0)
    assert len(history.history["loss"]) == 3


def test_datasets_pass_through_unchecked(rng):
    x, y = _data(rng)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(10)
    model = _model()
    history = model.fit(dataset, epochs=2, shuffle=False, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert np.isfinite(model.evaluate(dataset, verbose=0))
    assert model.predict(dataset.map(lambda x, y: x), verbose=0).shape == (40,)


def test_validation_data_and_split_still_work(rng):
    x, y = _data(rng)
    model = _model()
    history = model.fit(x, y, validation_data=(x, y), epochs=2, batch_size=40, verbose=0)
    assert len(history.history["val_loss"]) == 2
    history = model.fit(x, y, validation_split=0.25, epochs=2, verbose=0)
    assert np.isfinite(history.history["val_loss"]).all()
