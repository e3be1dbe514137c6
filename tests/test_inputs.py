"""`keras_linreg.inputs`: what in-memory data is, how it is checked, where training rows end.

Bad in-memory data is refused before any update, with a message that says where; the
train/validation cut is Keras' own (checked against
`keras.src.trainers.data_adapters.array_slicing.train_validation_split`), and the fast
path, the standardization statistics and the divergence message use exactly those rows.
"""

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from keras.src.trainers.data_adapters.array_slicing import train_validation_split

import keras_linreg
from keras_linreg import inputs


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


# ------------------------------------------------------------------ recognising
def _generator():
    yield np.zeros((2, 1)), np.zeros(2)


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda: np.zeros((3, 2)), True),
        (lambda: np.float32(1.0), True),
        (lambda: 1.5, True),
        (lambda: [[1.0, 2.0], [3.0, 4.0]], True),
        (lambda: ((1.0, 2.0), (3.0, 4.0)), True),  # rows, like a list
        (lambda: pd.DataFrame({"a": [1.0]}), True),
        (lambda: pd.Series([1.0]), True),
        (lambda: tf.constant([1.0]), True),
        (lambda: tf.Variable([1.0]), True),
        (lambda: keras.Variable([1.0]), True),
        (lambda: None, False),
        (lambda: tf.data.Dataset.from_tensor_slices(np.zeros(3)), False),
        (lambda: {"x": np.zeros(3)}, False),  # Keras' multi-input convention
        (_generator, False),
        (lambda: tf.sparse.from_dense([[1.0, 0.0]]), False),
        (lambda: tf.ragged.constant([[1.0], [2.0, 3.0]]), False),
    ],
)
def test_is_in_memory(make, expected):
    assert inputs.is_in_memory(make()) is expected


def test_sliceable_converts_what_the_fast_path_can_slice():
    array = np.arange(6.0).reshape(3, 2)
    assert inputs.sliceable(array) is array  # no copy
    np.testing.assert_array_equal(inputs.sliceable(pd.DataFrame(array)), array)
    np.testing.assert_array_equal(inputs.sliceable(array.tolist()), array)
    variable = inputs.sliceable(tf.Variable(array))
    assert isinstance(variable, tf.Tensor)
    np.testing.assert_array_equal(variable.numpy(), array)
    assert inputs.sliceable(None) is None
    for other in (np.array(["a", "b"]), tf.data.Dataset.from_tensor_slices(array),
                  tf.constant(["a"]), [[1.0], [2.0, 3.0]]):
        assert inputs.sliceable(other) is NotImplemented


def test_tuples_are_rows_like_lists(rng):
    x, y = _data(rng, n=30)
    results = []
    for convert in (np.asarray, lambda a: a.tolist(), lambda a: tuple(map(tuple, a))):
        model = _model(learning_rate=0.01)
        xs = convert(x)
        model.fit(xs, tuple(y.tolist()), batch_size=30, epochs=3, shuffle=False, verbose=0)
        results.append(model.get_parameters())
    for slope, intercept in results[1:]:
        np.testing.assert_array_equal(slope, results[0][0])
        assert intercept == results[0][1]


# --------------------------------------------------------- check_arrays (float64)
def test_check_arrays_returns_views_in_their_own_dtype():
    x = np.arange(12, dtype="float32").reshape(6, 2)
    checked_x, checked_y, checked_w = inputs.check_arrays(x, np.ones((6, 1)), np.ones(6))
    assert np.shares_memory(checked_x, x)  # a view, not a float64 copy
    assert checked_x.dtype == np.float32 and checked_x.shape == (6, 2)
    assert checked_y.shape == (6,) and checked_w.shape == (6,)
    x1, y1, w1 = inputs.check_arrays([1.0, 2.0], None, require_y=False)
    assert x1.shape == (2, 1) and y1 is None and w1 is None
    # float64 beyond the float32 range is fine for float64 computations.
    inputs.check_arrays(np.array([1e300, 1.0]), np.array([0.0, 1.0]))


@pytest.mark.parametrize(
    "x, y, w, message",
    [
        (np.array([1.0, np.nan]), np.zeros(2), None, r"non-finite values in `x`.*row 1"),
        (np.zeros(2), np.array([0.0, np.inf]), None, r"non-finite values in `y`.*row 1"),
        (np.zeros(2), np.zeros(2), np.array([1.0, np.nan]), r"`sample_weight`.*row 1"),
        (np.zeros(2), np.zeros(2), np.array([1.0, -1.0]), r"non-negative.*row 1"),
        (np.zeros((3, 2)), np.zeros(4), None, r"`y` with 4 rows, but `x` has 3"),
        (np.array(["a", "b"]), np.zeros(2), None, r"expected numeric values"),
        (np.zeros((2, 2, 2)), np.zeros(2), None, r"x.shape=\(2, 2, 2\)"),
    ],
)
def test_the_closed_form_references_check_through_inputs(x, y, w, message):
    """`least_squares` used to skip the finiteness check; both now refuse alike."""
    with pytest.raises(ValueError, match=message):
        inputs.check_arrays(x, y, w)
    with pytest.raises(ValueError, match=message):
        keras_linreg.least_squares(x, y, sample_weight=w)
    if "`y`" not in message:
        with pytest.raises(ValueError, match=message):
            keras_linreg.max_stable_learning_rate(x, sample_weight=w)


# ------------------------------------------------------------- the training rows
@pytest.mark.parametrize(
    "n, split", [(10, 0.25), (10, 0.1), (7, 0.3), (100, 0.7), (3, 0.5), (1000, 0.123)]
)
def test_split_point_is_keras_cut(n, split):
    train, validation = train_validation_split((np.arange(n),), split)
    assert inputs.split_point(n, split) == len(train[0])
    (ours_train, *_), (ours_validation, *_) = inputs.split_rows(
        (np.arange(n), None, None), split
    )
    np.testing.assert_array_equal(ours_train, train[0])
    np.testing.assert_array_equal(ours_validation, validation[0])
    assert inputs.split_point(n, 0.0) == n


@pytest.mark.parametrize("n, split", [(3, 0.9), (1, 0.5)])
def test_split_rows_refuses_an_empty_part_like_keras(n, split):
    with pytest.raises(ValueError, match="not sufficient to split") as keras_error:
        train_validation_split((np.arange(n),), split)
    with pytest.raises(ValueError, match="not sufficient to split") as ours:
        inputs.split_rows((np.arange(n), None, None), split)
    assert str(ours.value) == str(keras_error.value)


def _fractional_split_data():
    """10 rows, `validation_split=0.25`: floor(7.5) = 7 training rows, not 8.

    Row 7, the first validation row, is an outlier: any use of it as a training row
    shows (it would move the slope by about 1.5).
    """
    x = np.linspace(0.0, 3.0, 10)
    y = 2.0 * x + 1.0
    y[7] = 40.0
    return x.astype("float32"), y.astype("float32")


def test_fractional_split_the_fast_path_trains_on_exactly_the_first_seven_rows():
    x, y = _fractional_split_data()
    rate, epochs = 0.05, 20
    model = keras_linreg.LinearRegression(learning_rate=rate)
    model.compile()
    history = model.fit(x, y, validation_split=0.25, batch_size=10, epochs=epochs,
                        shuffle=False, verbose=0)

    def hand_loop(rows):
        slope = intercept = 0.0
        xs, ys = x[:rows].astype("float64"), y[:rows].astype("float64")
        losses = []
        for _ in range(epochs):
            residual = xs * slope + intercept - ys
            losses.append(np.mean(residual**2))
            slope -= rate * 2 * np.mean(residual * xs)
            intercept -= rate * 2 * np.mean(residual)
        return np.array(losses), slope, intercept

    losses, slope, intercept = hand_loop(7)
    np.testing.assert_allclose(history.history["loss"], losses, rtol=1e-4)
    got_slope, got_intercept = model.get_parameters()
    np.testing.assert_allclose(got_slope, [slope], rtol=1e-4)
    assert got_intercept == pytest.approx(intercept, rel=1e-4)
    validation = x[7:].astype("float64") * slope + intercept - y[7:]
    assert history.history["val_loss"][-1] == pytest.approx(np.mean(validation**2), rel=1e-4)
    # Control: eight rows (`n - int(n * split)`) give a visibly different fit.
    eight = hand_loop(8)
    assert abs(eight[1] - slope) > 0.1


def test_fractional_split_the_standardization_statistics_use_exactly_those_rows():
    """One full-batch step from zero in standardized coordinates, by hand:

    z = (x - mean) / std,  w = lr * 2 * mean(z * y),  b = lr * 2 * mean(y),
    slope = w / std,  intercept = b - w * mean / std,

    with the mean and population std of the training rows only.
    """
    x, y = _fractional_split_data()
    rate = 0.1
    model = keras_linreg.LinearRegression(learning_rate=rate, standardize=True)
    model.compile()
    model.fit(x, y, validation_split=0.25, batch_size=10, epochs=1, shuffle=False, verbose=0)

    def one_step(rows):
        xs, ys = x[:rows].astype("float64"), y[:rows].astype("float64")
        mean, std = xs.mean(), xs.std()
        w = rate * 2 * np.mean((xs - mean) / std * ys)
        b = rate * 2 * np.mean(ys)
        return w / std, b - w * mean / std

    slope, intercept = one_step(7)
    got_slope, got_intercept = model.get_parameters()
    np.testing.assert_allclose(got_slope, [slope], rtol=1e-5)
    assert got_intercept == pytest.approx(intercept, rel=1e-5)
    wrong = one_step(8)  # control: the statistics of 8 rows give another step
    assert abs(wrong[0] - slope) > 1e-3 and abs(wrong[1] - intercept) > 1e-3


def test_fractional_split_the_divergence_message_uses_exactly_those_rows():
    x, y = _fractional_split_data()
    model = keras_linreg.LinearRegression(learning_rate=5.0)
    model.compile()
    with pytest.raises(keras_linreg.DivergenceError) as info:
        model.fit(x, y, validation_split=0.25, batch_size=10, epochs=50, shuffle=False,
                  verbose=0)
    seven = keras_linreg.max_stable_learning_rate(x[:7])
    assert info.value.max_stable_learning_rate == pytest.approx(seven, rel=1e-9)
    assert abs(keras_linreg.max_stable_learning_rate(x[:8]) - seven) > 1e-3 * seven


# ---------------------------------------------------------- DataFrame column names
def _frame_problem(rng, n=60):
    frame = pd.DataFrame(
        {
            "a": rng.normal(size=n),
            "b": rng.normal(5.0, 2.0, size=n),
            "c": rng.normal(-3.0, 0.5, size=n),
        }
    ).astype("float32")
    y = (frame.to_numpy() @ np.array([1.0, -2.0, 3.0]) + 0.5).astype("float32")
    return frame, y


def test_fit_on_a_dataframe_records_its_column_names(rng, tmp_path):
    frame, y = _frame_problem(rng)
    model = keras_linreg.LinearRegression(learning_rate=0.01)
    model.compile()
    model.fit(frame, y, epochs=1, verbose=0)
    assert model.feature_names == ("a", "b", "c")
    assert model.get_config()["feature_names"] == ["a", "b", "c"]
    model.save(tmp_path / "m.keras")
    assert keras.models.load_model(tmp_path / "m.keras").feature_names == ("a", "b", "c")


def test_names_given_by_the_user_are_kept_over_the_columns(rng):
    frame, y = _frame_problem(rng)
    model = _model(feature_names=["c", "b", "a"])
    model.fit(frame, y, epochs=1, verbose=0)
    assert model.feature_names == ("c", "b", "a")


def test_predict_and_evaluate_select_columns_by_name(rng):
    frame, y = _frame_problem(rng)
    model = _model(feature_names=["a", "b", "c"])
    model.slope.assign([1.0, -2.0, 3.0])
    expected = frame.to_numpy() @ np.array([1.0, -2.0, 3.0]) + 1.0  # intercept 1
    shuffled = frame[["c", "a", "b"]].assign(extra=np.arange(len(frame), dtype="float32"))
    np.testing.assert_allclose(model.predict(shuffled, verbose=0), expected, rtol=1e-5)
    np.testing.assert_allclose(model.predict(frame.to_numpy(), verbose=0), expected, rtol=1e-5)
    reordered = model.evaluate(shuffled, y, verbose=0, return_dict=True)["loss"]
    in_order = model.evaluate(frame, y, verbose=0, return_dict=True)["loss"]
    assert reordered == pytest.approx(in_order, rel=1e-6)
    assert in_order == pytest.approx(np.mean((expected - y) ** 2), rel=1e-4)


def test_fit_selects_columns_by_name_too(rng):
    frame, y = _frame_problem(rng)
    first, second = _model(feature_names=["a", "b", "c"]), _model(feature_names=["a", "b", "c"])
    first.fit(frame, y, batch_size=60, epochs=3, shuffle=False, verbose=0)
    second.fit(frame[["b", "c", "a"]], y, batch_size=60, epochs=3, shuffle=False, verbose=0)
    np.testing.assert_allclose(second.get_parameters()[0], first.get_parameters()[0], rtol=1e-6)


def test_a_missing_or_renamed_column_is_an_error_naming_it(rng):
    frame, y = _frame_problem(rng)
    model = _model(feature_names=["a", "b", "c"])
    before = _state(model)
    renamed = frame.rename(columns={"b": "B"})
    with pytest.raises(ValueError, match=r"column 'b' is missing\. Received: x\.columns="):
        model.fit(renamed, y, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"columns 'a', 'c' are missing"):
        model.predict(frame[["b"]], verbose=0)
    with pytest.raises(ValueError, match=r"`validation_data\[0\]`.*'b' is missing"):
        model.fit(frame, y, validation_data=(renamed, y), epochs=1, verbose=0)
    np.testing.assert_array_equal(_state(model)[0], before[0])
    assert _state(model)[1:] == before[1:]


# ------------------------------------------------------------ batched iterables
def test_batched_iterables_are_recognised():
    x = np.ones((4, 2))
    dataset = tf.data.Dataset.from_tensor_slices((x, np.ones(4))).batch(2)
    generator = ((x, np.ones(4)) for _ in range(2))
    for batched in ([(x, np.ones(4))], dataset, generator):
        assert inputs.is_batched(batched)
    for not_batched in (x, tf.constant(x), pd.DataFrame(x), "x.csv", {"x": x}, None):
        assert not inputs.is_batched(not_batched)
    assert not inputs.is_batched([(x, np.ones(4))], np.ones(4))  # with y: in-memory rows
    assert inputs.reiterable([]) and inputs.reiterable(dataset)
    assert not inputs.reiterable(generator) and not inputs.reiterable(iter([]))


def test_batches_are_checked_and_named():
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    ((index, x, y, w, names),) = list(
        inputs.batches([(frame, pd.Series([1.0, 2.0]), tf.constant([1.0, 0.5]))])
    )
    assert index == 0 and x.shape == (2, 2) and names == ("a", "b")
    np.testing.assert_array_equal(w, [1.0, 0.5])
    assert inputs.column_names(pd.Series([1.0], name="rooms")) == ("rooms",)
    with pytest.raises(ValueError, match="batch 0 of `x`: Received non-finite values in `y`"):
        list(inputs.batches([(np.ones(2), np.array([1.0, np.nan]))]))
    with pytest.raises(ValueError, match="batch 0 of `x`.*negative"):
        list(inputs.batches([(np.ones(2), np.ones(2), np.array([1.0, -1.0]))]))


def test_float32_values_whose_sum_overflows_are_still_finite():
    """The one-pass check sums float32 data; a sum that overflows must not be read
    as a non-finite value (it falls back to the exact min/max check)."""
    x = np.full((4, 2), 3e38, dtype=np.float32)  # each finite, the sum is inf
    with np.errstate(over="ignore"):
        assert not np.isfinite(x.sum())
    checked, _, _ = inputs.check_arrays(x, np.zeros(4, dtype=np.float32))
    assert checked is not None
    x[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"row 2, column 1"):
        inputs.check_arrays(x, np.zeros(4, dtype=np.float32))
