"""`LinearRegression.fit`'s fast path for in-memory arrays (keras_linreg/fast_fit.py).

Correctness only (never speed): the fast path must give the stock Keras path's losses and
weights on the same row order, and a hand-written loop's:

```
for each epoch, for each batch B of the epoch's row order (the last one short):
    loss_B = sum_{i in B} w_i (x_i · slope + b - y_i)^2 / |B|
    slope -= lr * d(loss_B)/d(slope);  b -= lr * d(loss_B)/db
epoch loss = sum_B |B| loss_B / n       (the rows' weighted-by-count mean)
```

Tolerances: the fast path and Keras' path run the same float32 `train_step`, so they agree
to rtol 1e-5 (the issue's bound); the float64 NumPy loop differs from float32 by rounding
only, rtol 1e-4 over these few epochs.

Every comparison also checks which path ran: `keras.Model.fit` (Keras' own loop) is wrapped
to record the models it ran for, and `fit_fast` fails if `LinearRegression.fit` fell back
to it, so an equivalence test cannot pass by comparing Keras' loop with itself.
"""

import math
import warnings

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import keras_linreg
from keras_linreg.fast_fit import epoch_permutation

N, D, BATCH, LR = 1000, 3, 128, 0.05  # 8 batches, the last one 104 rows


@pytest.fixture
def data(rng):
    x = rng.normal(size=(N, D)).astype("float32")
    y = (x @ np.array([1.0, -2.0, 3.0]) + 0.5 + rng.normal(0, 0.1, N)).astype("float32")
    w = rng.uniform(0.5, 1.5, N).astype("float32")
    return x, y, w


def new_model(**kwargs):
    model = keras_linreg.LinearRegression(n_features=D, learning_rate=LR, **kwargs)
    model.compile(metrics=[keras.metrics.RootMeanSquaredError()])
    return model


def hand_loop(x, y, w, orders, batch_size=BATCH, lr=LR, slope=None, intercept=0.0,
              fit_intercept=True):  # fmt: skip
    """Float64 mini-batch SGD over the given per-epoch row orders; returns losses, weights.

    With `fit_intercept=False` the intercept is never updated (it stays as given)."""
    x, y = x.astype("float64"), y.astype("float64")
    w = np.ones(len(y)) if w is None else w.astype("float64")
    slope = np.zeros(x.shape[1]) if slope is None else slope
    losses = []
    for order in orders:
        total = 0.0
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            xb, yb, wb = x[rows], y[rows], w[rows]
            residual = xb @ slope + intercept - yb
            total += np.sum(wb * residual**2)
            slope = slope - lr * 2 * (wb * residual) @ xb / len(rows)
            if fit_intercept:
                intercept = intercept - lr * 2 * np.sum(wb * residual) / len(rows)
        losses.append(total / len(order))
    return np.array(losses), slope, intercept


def assert_same_fit(fast, stock, fast_model, stock_model, rtol=1e-5):
    assert fast.history.keys() == stock.history.keys()
    for key in stock.history:
        np.testing.assert_allclose(fast.history[key], stock.history[key], rtol=rtol, err_msg=key)
    for a, b in zip(fast_model.get_parameters(), stock_model.get_parameters(), strict=True):
        np.testing.assert_allclose(a, b, rtol=rtol)


def ran_keras_fit(calls, model):
    return any(called is model for called in calls)


@pytest.fixture
def fit_fast(keras_fit_calls):
    """`fit_fast(model, ...)`: `model.fit(...)`, failing if it fell back to Keras' `fit`."""

    def fit(model, *args, **kwargs):
        before = len(keras_fit_calls)
        history = model.fit(*args, **kwargs)
        assert not ran_keras_fit(keras_fit_calls[before:], model), (
            "fit fell back to keras.Model.fit"
        )
        return history

    return fit


def test_the_recorder_sees_keras_fit_and_the_fallback(data, fit_fast, keras_fit_calls):
    """Control for `fit_fast`: Keras' loop, called directly or by a fallback, is recorded."""
    x, y, _ = data
    direct, fallback, fast = new_model(), new_model(), new_model()
    keras.Model.fit(direct, x, y, batch_size=BATCH, epochs=1, verbose=0)
    fallback.fit(x, y, batch_size=BATCH, epochs=1, shuffle="batch", verbose=0)
    fast.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    assert ran_keras_fit(keras_fit_calls, direct) and ran_keras_fit(keras_fit_calls, fallback)
    assert not ran_keras_fit(keras_fit_calls, fast)
    with pytest.raises(AssertionError, match="fell back"):
        fit_fast(new_model(), x, y, epochs=1, shuffle="batch", verbose=0)


# ------------------------------------------------------------- same as stock Keras
def test_unshuffled_fit_equals_stock_keras_and_a_hand_loop(data, fit_fast):
    x, y, w = data
    kwargs = dict(sample_weight=w, batch_size=BATCH, epochs=3, shuffle=False, verbose=0)
    fast_model, stock_model = new_model(), new_model()
    fast = fit_fast(fast_model, x, y, **kwargs)
    stock = keras.Model.fit(stock_model, x, y, **kwargs)  # Keras' own NumPy path
    assert_same_fit(fast, stock, fast_model, stock_model)

    losses, slope, intercept = hand_loop(x, y, w, [np.arange(N)] * 3)
    np.testing.assert_allclose(fast.history["loss"], losses, rtol=1e-4)
    got_slope, got_intercept = fast_model.get_parameters()
    np.testing.assert_allclose(got_slope, slope, rtol=1e-4)
    np.testing.assert_allclose(got_intercept, intercept, rtol=1e-4)


def test_validation_split_and_validation_data_equal_stock_keras(data, fit_fast):
    x, y, w = data
    for extra in (
        dict(validation_split=0.25),
        dict(validation_data=(x[:300], y[:300], w[:300]), validation_batch_size=50),
        dict(validation_data=(x[:300], y[:300]), validation_freq=2),
    ):
        kwargs = dict(sample_weight=w, batch_size=BATCH, epochs=3, shuffle=False, verbose=0)
        fast_model, stock_model = new_model(), new_model()
        fast = fit_fast(fast_model, x, y, **kwargs, **extra)
        stock = keras.Model.fit(stock_model, x, y, **kwargs, **extra)
        assert "val_loss" in fast.history and "val_root_mean_squared_error" in fast.history
        assert_same_fit(fast, stock, fast_model, stock_model)


def test_validation_split_uses_the_last_rows_like_keras(data, fit_fast):
    x, y, _ = data
    model = new_model()
    history = fit_fast(model, x, y, batch_size=BATCH, epochs=2, shuffle=False, validation_split=0.2,
                        verbose=0)
    losses, slope, intercept = hand_loop(x[:800], y[:800], None, [np.arange(800)] * 2)
    np.testing.assert_allclose(history.history["loss"], losses, rtol=1e-4)
    residual = x[800:].astype("float64") @ slope + intercept - y[800:]
    np.testing.assert_allclose(history.history["val_loss"][-1], np.mean(residual**2), rtol=1e-4)


def test_jit_compiled_steps_equal_stock_keras(data, fit_fast):
    x, y, w = data
    kwargs = dict(sample_weight=w, batch_size=BATCH, epochs=2, shuffle=False, verbose=0,
                  validation_split=0.2)
    models = []
    for _ in range(2):
        model = keras_linreg.LinearRegression(n_features=D, learning_rate=LR)
        model.compile(jit_compile=True)
        models.append(model)
    fast = fit_fast(models[0], x, y, **kwargs)
    stock = keras.Model.fit(models[1], x, y, **kwargs)
    assert_same_fit(fast, stock, *models)


def test_integer_targets_and_a_new_dtype_on_the_same_model(data, fit_fast):
    x, y, _ = data
    model, stock_model = new_model(), new_model()
    for targets in (y, np.round(y).astype("int64")):  # same n: a new function, not an error
        fast = fit_fast(model, x, targets, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
        stock = keras.Model.fit(stock_model, x, targets, batch_size=BATCH, epochs=1,
                                shuffle=False, verbose=0)
        assert_same_fit(fast, stock, model, stock_model)


def test_tf_data_input_goes_to_keras_and_matches(data, fit_fast, keras_fit_calls):
    x, y, _ = data
    fast_model, data_model = new_model(), new_model()
    fast = fit_fast(fast_model, x, y, batch_size=BATCH, epochs=2, shuffle=False,
                    verbose=0)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)
    other = data_model.fit(dataset, epochs=2, verbose=0)
    assert ran_keras_fit(keras_fit_calls, data_model)
    assert_same_fit(fast, other, fast_model, data_model)


def test_pandas_and_float64_inputs_give_the_numpy_float32_result(data, fit_fast):
    x, y, w = data
    kwargs = dict(batch_size=BATCH, epochs=2, shuffle=False, verbose=0)
    reference_model = new_model()
    reference = fit_fast(reference_model, x, y, sample_weight=w, **kwargs)
    frame = pd.DataFrame(x.astype("float64"), columns=["a", "b", "c"])
    model = new_model()
    history = fit_fast(model, frame, pd.Series(y), sample_weight=pd.Series(w), **kwargs)
    assert_same_fit(history, reference, model, reference_model)
    model = new_model()
    history = fit_fast(model, x.astype("float64"), y.astype("float64")[:, None], sample_weight=w,
                        **kwargs)
    assert_same_fit(history, reference, model, reference_model)


def test_one_dimensional_x_and_default_batch_size_equal_stock(tutorial_data, fit_fast):
    x, y = tutorial_data
    fast_model = keras_linreg.LinearRegression(learning_rate=0.01)
    stock_model = keras_linreg.LinearRegression(learning_rate=0.01)
    fast_model.compile()
    stock_model.compile()
    fast = fit_fast(fast_model, x, y, epochs=3, shuffle=False, verbose=0)  # batch_size 32: 4 steps
    stock = keras.Model.fit(stock_model, x, y, epochs=3, shuffle=False, verbose=0)
    assert_same_fit(fast, stock, fast_model, stock_model)
    assert int(fast_model.optimizer.iterations.numpy()) == 12


def test_tutorial_workload_matches_the_eager_loop(tutorial_data, fit_fast):
    """One full batch per epoch, shuffle left at its default (True): the step is a sum
    over all rows, so the order does not matter and the losses are the tutorial's."""
    x, y = tutorial_data
    model = keras_linreg.LinearRegression(learning_rate=0.01)
    model.compile()
    history = fit_fast(model, x, y, batch_size=100, epochs=100, verbose=0)
    losses, slope, intercept = hand_loop(x[:, None], y, None, [np.arange(100)] * 100,
                                         batch_size=100, lr=0.01)
    np.testing.assert_allclose(history.history["loss"], losses, rtol=1e-4)
    np.testing.assert_allclose(model.get_parameters()[0], slope, rtol=1e-4)


# ------------------------------------------------------------------------ shuffling
def test_epoch_permutation_is_a_permutation_that_changes_every_epoch():
    orders = [epoch_permutation(N, 11, epoch) for epoch in range(4)]
    for order in orders:
        assert np.array_equal(np.sort(order), np.arange(N))
        assert not np.array_equal(order, np.arange(N))
    for a, b in zip(orders, orders[1:], strict=False):
        assert np.mean(a == b) < 0.05  # not only the batch order: the rows move
    np.testing.assert_array_equal(epoch_permutation(N, 11, 2), orders[2])  # a pure function
    assert not np.array_equal(epoch_permutation(N, 12, 2), orders[2])
    for n in (1, 2, 3, 99, 101, 4097):  # sizes that are and are not squares
        assert np.array_equal(np.sort(epoch_permutation(n, 5, 0)), np.arange(n))


def test_epoch_permutation_is_the_cycle_walked_feistel_network():
    """The rows are the documented construction, recomputed here in NumPy: 4 Feistel
    rounds on `(i // a, i % a)`, `a = ceil(sqrt(n))`, with the epoch's round tables,
    each image outside `[0, n)` walked through the network again until it lands inside
    (whatever part of it the compiled function walks)."""
    import math

    from keras_linreg.fast_fit import _round_tables

    for n, seed, epoch in ((1000, 3, 0), (1001, 3, 1), (4097, 7, 2), (99_999, 1, 5)):
        side = math.isqrt(n - 1) + 1
        tables = _round_tables(tf.constant([seed, epoch], tf.int64), side, tf.int32).numpy()

        def feistel(i, tables=tables, side=side):
            left, right = i // side, i % side
            for table in tables:
                left, right = right, (left + table[right]) % side
            return left * side + right

        rows = feistel(np.arange(n, dtype=np.int64))
        while (rows >= n).any():
            rows = np.where(rows >= n, feistel(rows), rows)
        np.testing.assert_array_equal(epoch_permutation(n, seed, epoch), rows)


def test_shuffled_fit_follows_the_seeded_permutation(data, fit_fast):
    """fit(shuffle=True) = the hand loop over `epoch_permutation(n, seed, epoch)`, where the
    seed is the first draw from Keras' global seed generator."""
    x, y, w = data
    keras.utils.set_random_seed(5)
    seed = int(keras.random.randint((), 0, 2**31 - 1, dtype="int32"))
    keras.utils.set_random_seed(5)
    model = new_model()
    history = fit_fast(model, x, y, sample_weight=w, batch_size=BATCH, epochs=3, verbose=0)
    orders = [epoch_permutation(N, seed, epoch) for epoch in range(3)]
    losses, slope, _ = hand_loop(x, y, w, orders)
    np.testing.assert_allclose(history.history["loss"], losses, rtol=1e-4)
    np.testing.assert_allclose(model.get_parameters()[0], slope, rtol=1e-4)
    unshuffled, _, _ = hand_loop(x, y, w, [np.arange(N)] * 3)
    assert not np.allclose(history.history["loss"][1:], unshuffled[1:], rtol=1e-4)


class _RecordingModel(keras_linreg.LinearRegression):
    """Records, in-graph, the row ids (column 0 of x) in the order `train_step` sees them."""

    rows = 500

    def build(self, input_shape):
        super().build(input_shape)
        self.order = self.add_weight(shape=(self.rows,), initializer="zeros", dtype="int32",
                                     trainable=False, name="order")
        self.position = self.add_weight(shape=(), initializer="zeros", dtype="int32",
                                        trainable=False, name="position")

    def train_step(self, data):
        ids = tf.cast(data[0][:, 0], tf.int32)
        positions = self.position + tf.range(tf.shape(ids)[0])
        self.order.assign(tf.tensor_scatter_nd_update(self.order, positions[:, None], ids))
        self.position.assign_add(tf.shape(ids)[0])
        return super().train_step(data)


def test_every_epoch_sees_every_row_once_in_a_new_order(rng, fit_fast):
    n = _RecordingModel.rows
    x = np.column_stack([np.arange(n), rng.normal(size=n)]).astype("float32")
    y = rng.normal(size=n).astype("float32")
    orders = []

    class Collect(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            orders.append(self.model.order.numpy().copy())
            self.model.position.assign(0)

    keras.utils.set_random_seed(1)
    model = _RecordingModel(n_features=2, learning_rate=1e-6, name="recording")  # < stable 1.2e-5
    model.compile()
    fit_fast(model, x, y, batch_size=64, epochs=3, verbose=0, callbacks=[Collect()])
    assert len(orders) == 3
    for order in orders:
        assert np.array_equal(np.sort(order), np.arange(n))  # each row exactly once
        assert not np.array_equal(order, np.arange(n))
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[1], orders[2])
    # The first batch holds different rows each epoch (rows move between batches).
    assert set(orders[0][:64]) != set(orders[1][:64])


def test_seeded_runs_repeat_and_other_seeds_differ(data, fit_fast):
    x, y, _ = data

    def run(seed):
        keras.utils.set_random_seed(seed)
        model = new_model()
        history = fit_fast(model, x, y, batch_size=BATCH, epochs=3, verbose=0)
        return history.history["loss"], model.get_parameters()[0]

    (losses_a, slope_a), (losses_b, slope_b) = run(3), run(3)
    assert losses_a == losses_b
    np.testing.assert_array_equal(slope_a, slope_b)
    losses_c, _ = run(4)
    assert losses_c[1:] != losses_a[1:]


def test_backup_and_restore_resumes_with_the_same_row_order(data, tmp_path, fit_fast):
    x, y, _ = data

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise RuntimeError("interrupted")

    keras.utils.set_random_seed(9)
    uninterrupted = new_model()
    fit_fast(uninterrupted, x, y, batch_size=BATCH, epochs=4, verbose=0)

    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    keras.utils.set_random_seed(9)
    with pytest.raises(RuntimeError, match="interrupted"):
        fit_fast(new_model(), x, y, batch_size=BATCH, epochs=4, verbose=0,
                        callbacks=[backup, Interrupt()])
    keras.utils.set_random_seed(9)  # the "restarted process"
    resumed = new_model()
    history = fit_fast(resumed, x, y, batch_size=BATCH, epochs=4, verbose=0,
                          callbacks=[keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))])
    assert len(history.history["loss"]) == 2  # epochs 2 and 3 only
    np.testing.assert_allclose(resumed.get_parameters()[0], uninterrupted.get_parameters()[0],
                               rtol=1e-6)


# ------------------------------------------------------------ epochs, steps, callbacks
def test_initial_epoch_and_steps_per_epoch_equal_stock(data, fit_fast):
    x, y, _ = data
    for extra in (dict(initial_epoch=2, epochs=4), dict(steps_per_epoch=4, epochs=4)):
        kwargs = dict(batch_size=BATCH, shuffle=False, verbose=0, **extra)
        fast_model, stock_model = new_model(), new_model()
        fast = fit_fast(fast_model, x, y, **kwargs)
        stock = keras.Model.fit(stock_model, x, y, **kwargs)
        assert len(fast.history["loss"]) == 2 if "initial_epoch" in extra else 4
        assert_same_fit(fast, stock, fast_model, stock_model)
    # steps_per_epoch=4 over 8 batches: epochs alternate between the two halves.
    halves = [np.arange(512), np.arange(512, N)]
    losses, _, _ = hand_loop(x, y, None, halves * 2)
    np.testing.assert_allclose(fast.history["loss"], losses, rtol=1e-4)


def test_steps_per_epoch_beyond_the_data_warns_like_keras(data, fit_fast):
    x, y, _ = data
    # Recorded by hand: pytest.warns would also re-raise numpy's DeprecationWarning
    # about TensorFlow's __array__, which pyproject.toml filters everywhere else.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = fit_fast(new_model(), x, y, batch_size=BATCH, epochs=2, steps_per_epoch=10,
                                  shuffle=False, verbose=0)
    assert any(
        issubclass(w.category, UserWarning) and "ran out of data" in str(w.message) for w in caught
    )
    assert len(history.history["loss"]) == 2


def test_callbacks_fire_every_epoch_and_batch_hooks_every_step(data, fit_fast):
    x, y, _ = data
    events = []

    class Epochs(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            events.append(("begin", epoch))

        def on_epoch_end(self, epoch, logs=None):
            events.append(("end", epoch, sorted(logs)))

    class Batches(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            events.append(("batch", batch, logs["loss"]))

    kwargs = dict(batch_size=BATCH, epochs=2, shuffle=False, verbose=0)
    fast_model, stock_model = new_model(), new_model()
    fast = fit_fast(fast_model, x, y, callbacks=[Epochs(), Batches()], **kwargs)
    fast_events, events[:] = list(events), []
    stock = keras.Model.fit(stock_model, x, y, callbacks=[Epochs(), Batches()], **kwargs)
    assert [e[:2] for e in fast_events] == [e[:2] for e in events]
    assert sum(e[0] == "batch" for e in fast_events) == 16  # 8 batches x 2 epochs
    np.testing.assert_allclose([e[2] for e in fast_events if e[0] == "batch"],
                               [e[2] for e in events if e[0] == "batch"], rtol=1e-5)
    assert_same_fit(fast, stock, fast_model, stock_model)

    events[:] = []
    fit_fast(new_model(), x, y, callbacks=[Epochs()], **kwargs)  # whole epochs in one call
    assert [e[:2] for e in events] == [("begin", 0), ("end", 0), ("begin", 1), ("end", 1)]
    assert events[1][2] == ["loss", "root_mean_squared_error"]


def test_stop_training_and_early_stopping(data, fit_fast):
    x, y, _ = data

    class StopAfterOne(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = True

    history = fit_fast(new_model(), x, y, batch_size=BATCH, epochs=5, verbose=0,
                              callbacks=[StopAfterOne()])
    assert len(history.history["loss"]) == 1
    stopper = keras.callbacks.EarlyStopping(monitor="loss", min_delta=1e9, patience=1)
    history = fit_fast(new_model(), x, y, batch_size=BATCH, epochs=10, verbose=0,
                       callbacks=[stopper])
    assert len(history.history["loss"]) == 2


def test_learning_rate_scheduler_changes_the_applied_rate(data, fit_fast):
    x, y, _ = data
    scheduler = keras.callbacks.LearningRateScheduler(lambda epoch, lr: 0.0 if epoch else lr)
    model = new_model()
    fit_fast(model, x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    after_one = model.get_parameters()[0]
    model = new_model()
    fit_fast(model, x, y, batch_size=BATCH, epochs=3, shuffle=False, verbose=0,
             callbacks=[scheduler])
    np.testing.assert_allclose(model.get_parameters()[0], after_one, rtol=1e-6)


def test_refit_after_recompile_equals_stock_and_shows_progress(data, capsys, keras_fit_calls):
    x, y, _ = data
    histories, models = [], []
    for fit in (keras_linreg.LinearRegression.fit, keras.Model.fit):
        model = new_model()
        fit(model, x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
        # A new compile resets `train_function`: the fast path's cached functions go too.
        model.compile(metrics=[keras.metrics.MeanAbsoluteError()])
        histories.append(fit(model, x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=1))
        models.append(model)
    assert not ran_keras_fit(keras_fit_calls, models[0])
    assert ran_keras_fit(keras_fit_calls, models[1])
    assert "mean_absolute_error" in histories[0].history
    assert_same_fit(histories[0], histories[1], *models)
    assert "8/8" in capsys.readouterr().out


# ---------------------------------------------------------------- refusals, warnings
def test_class_weight_is_refused_on_every_path(data):
    x, y, _ = data
    for inputs in ((x, y), (tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH), None)):
        with pytest.raises(ValueError, match="class_weight.*regression"):
            new_model().fit(*inputs, class_weight={0: 1.0, 1: 2.0}, verbose=0)


def test_no_warnings_with_every_argument(data, fit_fast):
    x, y, w = data
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # inside NumPy/Keras
        history = fit_fast(
            new_model(), x, y, sample_weight=w, batch_size=BATCH, epochs=2, shuffle=True,
            validation_split=0.1, verbose=0,
            callbacks=[keras.callbacks.TerminateOnNaN(), keras.callbacks.EarlyStopping("loss")],
        )
    assert len(history.history["val_loss"]) == 2
    assert all(math.isfinite(v) for v in history.history["loss"])


# ------------------------------------------------------------- Keras' own paths
def test_inputs_the_fast_path_leaves_to_keras_still_train(data, fit_fast, keras_fit_calls):
    """Generators, `shuffle="batch"`, `validation_steps`, a `tf.data` validation set and a
    `tf.distribute` strategy go to `keras.Model.fit`; eager tensors take the fast path.
    Without shuffling all of them see the same batches, so the losses agree."""
    x, y, _ = data
    kwargs = dict(batch_size=BATCH, epochs=2, shuffle=False, verbose=0)
    reference_model = new_model()
    reference = fit_fast(reference_model, x, y,
                         validation_data=(x[:256], y[:256]), **kwargs)

    def check(history, model, fast=False):
        assert ran_keras_fit(keras_fit_calls, model) is not fast
        np.testing.assert_allclose(history.history["loss"], reference.history["loss"],
                                   rtol=1e-5)
        np.testing.assert_allclose(model.get_parameters()[0],
                                   reference_model.get_parameters()[0], rtol=1e-5)

    model = new_model()  # eager tensors
    check(model.fit(tf.constant(x), tf.constant(y), **kwargs), model, fast=True)
    model = new_model()  # variables: converted to tensors once, the fast path too
    check(model.fit(tf.Variable(x), keras.Variable(y), **kwargs), model, fast=True)
    model = new_model()  # validation through Keras' evaluate
    history = model.fit(x, y, validation_data=tf.data.Dataset.from_tensor_slices(
        (x[:256], y[:256])).batch(BATCH), **kwargs)
    check(history, model, fast=True)  # the training loop is the fast path's
    np.testing.assert_allclose(history.history["val_loss"], reference.history["val_loss"],
                               rtol=1e-5)
    model = new_model()
    history = model.fit(x, y, validation_data=(x[:256], y[:256]), validation_steps=2, **kwargs)
    check(history, model, fast=True)
    np.testing.assert_allclose(history.history["val_loss"], reference.history["val_loss"],
                               rtol=1e-5)

    def batches():
        while True:
            for start in range(0, N, BATCH):
                yield x[start : start + BATCH], y[start : start + BATCH]

    model = new_model()
    check(model.fit(batches(), steps_per_epoch=8, epochs=2, verbose=0), model)
    # shuffle="batch": Keras' path, every row still seen once per epoch.
    model = new_model()
    history = model.fit(x, y, batch_size=BATCH, epochs=2, shuffle="batch", verbose=0)
    assert len(history.history["loss"]) == 2
    assert ran_keras_fit(keras_fit_calls, model)
    with tf.distribute.OneDeviceStrategy("/cpu:0").scope():
        model = new_model()
    check(model.fit(x, y, **kwargs), model)


def test_steps_per_execution_groups_batch_hooks_like_keras(data, fit_fast):
    x, y, _ = data
    ends = {"fast": [], "stock": []}

    class Batches(keras.callbacks.Callback):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def on_train_batch_end(self, batch, logs=None):
            ends[self.name].append((batch, logs["loss"]))

    models = []
    for _ in range(2):
        model = keras_linreg.LinearRegression(n_features=D, learning_rate=LR)
        model.compile(steps_per_execution=3)
        models.append(model)
    kwargs = dict(batch_size=BATCH, epochs=2, shuffle=False, verbose=0)
    fast = fit_fast(models[0], x, y, callbacks=[Batches("fast")], **kwargs)
    stock = keras.Model.fit(models[1], x, y, callbacks=[Batches("stock")], **kwargs)
    # Batches 0-2, 3-5, 6-7 per call. Keras reports the short last call as ending at
    # batch 8 (begin + steps_per_execution - 1); the fast path names the last batch run.
    assert [b for b, _ in ends["fast"]] == [2, 5, 7] * 2
    assert [b for b, _ in ends["stock"]] == [2, 5, 8] * 2
    np.testing.assert_allclose([v for _, v in ends["fast"]], [v for _, v in ends["stock"]],
                               rtol=1e-5)
    assert_same_fit(fast, stock, *models)


def test_without_an_intercept_the_fast_path_equals_stock_keras_and_a_hand_loop(data, fit_fast):
    """`fit_intercept=False`: the fast path runs (checked), the intercept stays 0.0 exactly,
    and the slope follows the hand loop that never updates an intercept."""
    x, y, w = data
    kwargs = dict(sample_weight=w, batch_size=BATCH, epochs=3, shuffle=False, verbose=0)
    fast_model, stock_model = new_model(fit_intercept=False), new_model(fit_intercept=False)
    fast = fit_fast(fast_model, x, y, **kwargs)
    stock = keras.Model.fit(stock_model, x, y, **kwargs)
    assert_same_fit(fast, stock, fast_model, stock_model)
    losses, slope, intercept = hand_loop(x, y, w, [np.arange(N)] * 3, fit_intercept=False)
    assert intercept == 0.0 and fast_model.get_parameters()[1] == 0.0
    np.testing.assert_allclose(fast.history["loss"], losses, rtol=1e-4)
    np.testing.assert_allclose(fast_model.get_parameters()[0], slope, rtol=1e-4)
    # y has an offset of 0.5: the model with an intercept ends elsewhere.
    with_intercept = new_model()
    fit_fast(with_intercept, x, y, **kwargs)
    assert np.max(np.abs(with_intercept.get_parameters()[0] - slope)) > 1e-3


# ------------------------------------------------- shared traces, arrays adopted as they are
def test_a_model_of_the_same_configuration_runs_the_shared_trace_on_its_own_variables(
    data, fit_fast
):
    """The second model reuses the first one's traced epoch function (a cache hit), trains
    its own weights from its own starting point exactly as Keras' fit does, and leaves
    the first model's weights alone."""
    from keras_linreg.fast_fit import _SHARED_TRACES

    x, y, w = data
    kwargs = dict(sample_weight=w, batch_size=BATCH, epochs=2, verbose=0)
    _SHARED_TRACES.clear()
    keras.utils.set_random_seed(2)
    first = new_model()
    fit_fast(first, x, y, **kwargs)
    first_weights = [v.copy() for v in first.get_weights()]
    hits = _SHARED_TRACES.hits

    start = [np.array([0.5, -0.5, 1.0], "float32"), np.array(0.25, "float32")]
    second, stock = new_model(), new_model()
    second.set_weights(start)
    stock.set_weights(start)
    keras.utils.set_random_seed(3)
    fast = fit_fast(second, x, y, **kwargs)
    assert _SHARED_TRACES.hits > hits  # the first model's trace ran
    keras.utils.set_random_seed(3)
    seed = int(keras.random.randint((), 0, 2**31 - 1, dtype="int32"))
    losses, slope, intercept = hand_loop(
        x, y, w, [epoch_permutation(N, seed, e) for e in range(2)],
        slope=start[0].astype("float64"), intercept=float(start[1]),
    )
    np.testing.assert_allclose(fast.history["loss"], losses, rtol=1e-4)
    np.testing.assert_allclose(second.get_parameters()[0], slope, rtol=1e-4)
    np.testing.assert_allclose(second.get_parameters()[1], intercept, rtol=1e-4)
    for before, after in zip(first_weights, first.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)

    # Unshuffled, against Keras' own loop from the same start.
    fit_fast(first, x, y, **dict(kwargs, shuffle=False))  # traces the unshuffled epoch
    second.set_weights(start)
    hits = _SHARED_TRACES.hits
    fast = fit_fast(second, x, y, **dict(kwargs, shuffle=False))
    unshuffled = keras.Model.fit(stock, x, y, **dict(kwargs, shuffle=False))
    assert _SHARED_TRACES.hits > hits
    assert_same_fit(fast, unshuffled, second, stock)


class _OffsetMetric(keras.metrics.Metric):
    """A metric whose Python state (`offset`) is not in its config."""

    def __init__(self, name="offset_mae", **kwargs):
        super().__init__(name=name, **kwargs)
        self.offset = 0.0
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.total.assign_add(tf.reduce_sum(tf.abs(y_true - y_pred)) + self.offset)

    def result(self):
        return self.total


def test_models_whose_configuration_does_not_fix_the_graph_trace_their_own(data, fit_fast):
    from keras_linreg.fast_fit import _configuration_key

    x, y, _ = data
    plain, same, custom = new_model(), new_model(), new_model()
    assert _configuration_key(plain) is not None
    assert _configuration_key(plain) == _configuration_key(same)
    metric_a = _OffsetMetric()
    custom.compile(metrics=[metric_a])
    assert _configuration_key(custom) is None  # a metric from outside Keras
    recording = _RecordingModel(n_features=2, name="recording_key")
    recording.compile()
    assert _configuration_key(recording) is None  # a subclass: any train_step
    patched = new_model()
    patched.train_step = lambda data: keras_linreg.LinearRegression.train_step(patched, data)
    assert _configuration_key(patched) is None  # a method replaced on the instance
    other_rate = keras_linreg.LinearRegression(n_features=D, learning_rate=LR / 2)
    other_rate.compile(metrics=[keras.metrics.RootMeanSquaredError()])
    assert _configuration_key(other_rate) != _configuration_key(plain)

    # Two custom-metric models with different Python state each see their own: one
    # full batch from zero weights, so the metric is sum|y| + offset.
    custom_b = new_model()
    metric_b = _OffsetMetric()
    metric_b.offset = 1000.0
    custom_b.compile(metrics=[metric_b])
    kwargs = dict(batch_size=N, epochs=1, shuffle=False, verbose=0)
    history_a = fit_fast(custom, x, y, **kwargs)
    history_b = fit_fast(custom_b, x, y, **kwargs)
    total = float(np.abs(y.astype("float64")).sum())
    assert history_a.history["offset_mae"][0] == pytest.approx(total, rel=1e-5)
    assert history_b.history["offset_mae"][0] == pytest.approx(total + 1000.0, rel=1e-5)


def _aligned(array):
    """A copy of `array` in a 64-byte aligned buffer."""
    raw = np.empty(array.nbytes + 64, np.uint8)
    offset = (-raw.ctypes.data) % 64
    out = raw[offset : offset + array.nbytes].view(array.dtype).reshape(array.shape)
    out[...] = array
    return out


class _TensorBuffer:
    """A CPU tensor seen through DLPack, so NumPy can tell where its memory is."""

    def __init__(self, tensor):
        self.tensor = tensor

    def __dlpack__(self, **kwargs):
        return tf.experimental.dlpack.to_dlpack(self.tensor)

    def __dlpack_device__(self):
        return (1, 0)  # kDLCPU


def test_aligned_float32_arrays_are_adopted_without_a_copy(data, fit_fast):
    from keras_linreg.fast_fit import _to_tensor

    x, y, _ = data
    aligned_x, aligned_y = _aligned(x), _aligned(y)
    for array in (aligned_x, aligned_y):
        tensor = _to_tensor(array)
        assert np.shares_memory(np.from_dlpack(_TensorBuffer(tensor)), array)
    misaligned = np.empty(x.size + 1, "float32")
    misaligned = misaligned[1:] if misaligned.ctypes.data % 64 == 0 else misaligned[:-1]
    misaligned = misaligned.reshape(x.shape)
    misaligned[...] = x
    for array in (misaligned, x.astype("float64"), np.asfortranarray(aligned_x)):
        tensor = _to_tensor(array)
        seen = np.from_dlpack(_TensorBuffer(tensor))
        assert not np.shares_memory(seen, array)
        assert seen.ctypes.data % 64 == 0
        np.testing.assert_array_equal(seen, x)  # float32 values; float64 cast exactly

    kwargs = dict(batch_size=BATCH, epochs=2, shuffle=False, verbose=0)
    adopted, copied = new_model(), new_model()
    fast = fit_fast(adopted, aligned_x, aligned_y, **kwargs)
    stock = keras.Model.fit(copied, x, y, **kwargs)
    assert_same_fit(fast, stock, adopted, copied)
    np.testing.assert_array_equal(aligned_x, x)  # fit never writes to the data


# ------------------------------------------------------- shuffled batches gathered on the host
@pytest.fixture
def host_gather(monkeypatch):
    """Shuffled fits gather on the host whatever the size, in chunks of 2 batches of
    `BATCH` (so epochs have several chunks and a short last one); returns the list of
    chunks gathered, `(key, first batch, batches)`, recorded as they are gathered."""
    from keras_linreg import fast_fit

    monkeypatch.setattr(fast_fit, "_HOST_GATHER_BYTES", 0)
    monkeypatch.setattr(fast_fit, "_HOST_CHUNK_ROWS", 2 * BATCH + 10)
    gathered = []
    gather = fast_fit._HostGather._gather

    def recording_gather(self, request, slot):
        gathered.append(request)
        return gather(self, request, slot)

    monkeypatch.setattr(fast_fit._HostGather, "_gather", recording_gather)
    return gathered


def test_host_gathered_epochs_follow_the_seeded_permutation(data, fit_fast, host_gather):
    """The same rows in the same order as the in-graph gather: the hand loop over
    `epoch_permutation(n, seed, epoch)`, with sample weights, float64 inputs cast to
    float32 once, and every chunk gathered exactly once."""
    x, y, w = data
    keras.utils.set_random_seed(5)
    seed = int(keras.random.randint((), 0, 2**31 - 1, dtype="int32"))
    keras.utils.set_random_seed(5)
    model = new_model()
    history = fit_fast(model, x.astype("float64"), y, sample_weight=w, batch_size=BATCH,
                       epochs=3, verbose=0)
    assert sorted(host_gather) == [(e, b, min(2, 8 - b)) for e in range(3) for b in (0, 2, 4, 6)]
    orders = [epoch_permutation(N, seed, epoch) for epoch in range(3)]
    losses, slope, intercept = hand_loop(x, y, w, orders)
    np.testing.assert_allclose(history.history["loss"], losses, rtol=1e-4)
    np.testing.assert_allclose(model.get_parameters()[0], slope, rtol=1e-4)
    np.testing.assert_allclose(model.get_parameters()[1], intercept, rtol=1e-4)
    # The gather reads float32 arrays where they are (no copy); others are cast once.
    from keras_linreg.fast_fit import _host_source

    assert _host_source(x) is x
    assert _host_source(x.astype("float64")).dtype == np.float32


def test_host_gather_equals_the_in_graph_gather_with_steps_and_hooks(data, fit_fast,
                                                                     monkeypatch, host_gather):
    """`steps_per_epoch` (passes spanning epochs), `steps_per_execution` with batch hooks
    and validation: the host-gathered fit gives the in-graph one's logs and weights."""
    from keras_linreg import fast_fit

    x, y, w = data
    batches = []

    class Batches(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            batches.append(batch)

    def run():
        keras.utils.set_random_seed(8)
        model = keras_linreg.LinearRegression(n_features=D, learning_rate=LR)
        model.compile(metrics=[keras.metrics.RootMeanSquaredError()], steps_per_execution=2)
        history = fit_fast(model, x, y, sample_weight=w, batch_size=BATCH, epochs=5,
                           steps_per_epoch=4, validation_data=(x[:200], y[:200]), verbose=0,
                           callbacks=[Batches()])
        return history, model

    monkeypatch.setattr(fast_fit, "_HOST_GATHER_BYTES", 2**62)  # in-graph gather
    monkeypatch.setattr(fast_fit, "_HOST_INLINE_BYTES", 2**62)
    in_graph, in_graph_model = run()
    assert host_gather == []
    in_graph_batches = list(batches)
    batches.clear()
    monkeypatch.setattr(fast_fit, "_HOST_GATHER_BYTES", 0)
    monkeypatch.setattr(fast_fit, "_HOST_CHUNK_ROWS", 3 * BATCH)
    host, host_model = run()
    assert len(host_gather) == 5 * 2  # 5 epochs of 4 steps, 2 steps per execution
    assert batches == in_graph_batches
    assert_same_fit(host, in_graph, host_model, in_graph_model, rtol=1e-6)
    # Gathered on the host by the calling thread (mid-sized data), the same again.
    del host_gather[:]
    batches.clear()
    monkeypatch.setattr(fast_fit, "_HOST_GATHER_BYTES", 2**62)
    monkeypatch.setattr(fast_fit, "_HOST_INLINE_BYTES", 0)
    inline, inline_model = run()
    assert len(host_gather) == 5 * 2
    assert batches == in_graph_batches
    assert_same_fit(inline, in_graph, inline_model, in_graph_model, rtol=1e-6)


def test_host_gathered_fit_resumes_with_the_same_row_order(data, tmp_path, fit_fast,
                                                           host_gather):
    x, y, _ = data

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise RuntimeError("interrupted")

    keras.utils.set_random_seed(9)
    uninterrupted = new_model()
    fit_fast(uninterrupted, x, y, batch_size=BATCH, epochs=4, verbose=0)
    keras.utils.set_random_seed(9)
    with pytest.raises(RuntimeError, match="interrupted"):
        fit_fast(new_model(), x, y, batch_size=BATCH, epochs=4, verbose=0,
                 callbacks=[keras.callbacks.BackupAndRestore(str(tmp_path)), Interrupt()])
    keras.utils.set_random_seed(9)
    resumed = new_model()
    del host_gather[:]
    history = fit_fast(resumed, x, y, batch_size=BATCH, epochs=4, verbose=0,
                       callbacks=[keras.callbacks.BackupAndRestore(str(tmp_path))])
    assert len(history.history["loss"]) == 2
    assert {key for key, _, _ in host_gather} == {2, 3}  # gathered from epoch 2 on
    np.testing.assert_allclose(resumed.get_parameters()[0], uninterrupted.get_parameters()[0],
                               rtol=1e-6)



def test_host_gathered_fit_stopped_early_equals_the_in_graph_one(data, fit_fast, monkeypatch,
                                                                  host_gather):
    """`stop_training` after epoch 1 while the next epoch's chunk and order are queued:
    the queued work is dropped, the fit is the in-graph one's, and the next fit (on the
    same pool of gather threads) is too."""
    from keras_linreg import fast_fit

    x, y, _ = data

    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                self.model.stop_training = True

    def run():
        keras.utils.set_random_seed(4)
        model = new_model()
        stopped = fit_fast(model, x, y, batch_size=BATCH, epochs=5, verbose=0,
                           callbacks=[Stop()])
        again = fit_fast(model, x, y, batch_size=BATCH, epochs=2, verbose=0)
        return stopped, again, model

    stopped, again, model = run()
    assert len(stopped.history["loss"]) == 2
    monkeypatch.setattr(fast_fit, "_HOST_GATHER_BYTES", 2**62)  # in-graph gather
    monkeypatch.setattr(fast_fit, "_HOST_INLINE_BYTES", 2**62)
    del host_gather[:]
    in_graph_stopped, in_graph_again, in_graph_model = run()
    assert host_gather == []
    assert_same_fit(stopped, in_graph_stopped, model, in_graph_model, rtol=1e-6)
    assert_same_fit(again, in_graph_again, model, in_graph_model, rtol=1e-6)
