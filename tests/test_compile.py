"""compile() choices, the learning rate's home, and Keras' own callbacks."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_linreg


def test_compile_without_arguments_is_enough(tutorial_data):
    x, y = tutorial_data
    model = keras_linreg.LinearRegression(learning_rate=0.02)
    model.compile()
    assert isinstance(model.optimizer, keras_linreg.LearningRateState)
    assert model.learning_rate == pytest.approx(0.02)
    model.fit(x, y, epochs=1, verbose=0)


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop", keras.optimizers.SGD(0.1)])
def test_an_optimizer_is_refused(optimizer):
    model = keras_linreg.LinearRegression()
    with pytest.raises(ValueError, match="takes no optimizer.*Received: optimizer="):
        model.compile(optimizer=optimizer)


@pytest.mark.parametrize(
    "loss", ["mae", "huber", keras.losses.MeanAbsoluteError(), keras.losses.MeanSquaredError("sum")]
)
def test_a_loss_other_than_mse_is_refused(loss):
    model = keras_linreg.LinearRegression()
    with pytest.raises(ValueError, match="always minimises the mean squared error"):
        model.compile(loss=loss)


@pytest.mark.parametrize(
    "loss", [None, "mse", "mean_squared_error", keras.losses.MeanSquaredError()]
)
def test_mse_is_accepted_and_changes_nothing(tutorial_data, loss):
    x, y = tutorial_data
    model = keras_linreg.LinearRegression()
    model.compile(loss=loss)
    history = model.fit(x, y, batch_size=100, epochs=1, shuffle=False, verbose=0)
    np.testing.assert_allclose(
        history.history["loss"], [np.mean(y.astype("float64") ** 2)], rtol=1e-6
    )


def test_learning_rate_state_never_updates_weights():
    state = keras_linreg.LearningRateState(learning_rate=0.1)
    variable = keras.Variable(1.0)
    with pytest.raises(NotImplementedError, match="applies"):
        state.apply_gradients([(keras.ops.ones(()), variable)])


def test_learning_rate_state_refuses_what_it_would_ignore():
    with pytest.raises(ValueError, match="clipnorm"):
        keras_linreg.LearningRateState(learning_rate=0.1, clipnorm=1.0)


def test_learning_rate_schedule_is_evaluated_on_the_step_counter(tutorial_data):
    x, y = tutorial_data
    schedule = keras.optimizers.schedules.ExponentialDecay(0.02, decay_steps=1, decay_rate=0.5)
    model = keras_linreg.LinearRegression(learning_rate=schedule)
    model.compile()
    model.fit(x, y, batch_size=100, epochs=3, shuffle=False, verbose=0)

    # Float64 hand loop with lr_t = 0.02 * 0.5**t.
    weight = bias = 0.0
    for step in range(3):
        r = weight * x.astype("float64") + bias - y
        lr = 0.02 * 0.5**step
        weight, bias = weight - lr * 2 * np.mean(r * x), bias - lr * 2 * np.mean(r)
    np.testing.assert_allclose(model.get_parameters()[0], [weight], rtol=1e-5)
    np.testing.assert_allclose(model.get_parameters()[1], bias, rtol=1e-5)
    assert model.optimizer.iterations.numpy() == 3
    assert model.learning_rate == pytest.approx(0.02 * 0.5**3)


def test_learning_rate_scheduler_sets_the_rate_the_model_applies(tutorial_data):
    x, y = tutorial_data
    model = keras_linreg.LinearRegression(learning_rate=0.01)
    model.compile()
    rates = [0.01, 0.0, 0.005]  # epoch 1 with rate 0 must leave the weights as they were
    seen = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: seen.append(model.get_parameters())
    )
    history = model.fit(
        x,
        y,
        batch_size=100,
        epochs=3,
        shuffle=False,
        verbose=0,
        callbacks=[keras.callbacks.LearningRateScheduler(lambda epoch: rates[epoch]), record],
    )
    np.testing.assert_array_equal(seen[0][0], seen[1][0])
    assert seen[0][1] == seen[1][1]
    assert not np.array_equal(seen[1][0], seen[2][0])
    np.testing.assert_allclose(history.history["learning_rate"], rates, rtol=1e-6)
    assert model.learning_rate == pytest.approx(0.005)


def test_reduce_lr_on_plateau_and_early_stopping(tutorial_data):
    x, y = tutorial_data
    model = keras_linreg.LinearRegression(learning_rate=0.01)
    model.compile()
    history = model.fit(
        x,
        y,
        batch_size=100,
        epochs=200,
        shuffle=False,
        verbose=0,
        callbacks=[
            keras.callbacks.ReduceLROnPlateau(
                monitor="loss", factor=0.5, patience=1, min_delta=1e-3
            ),
            keras.callbacks.EarlyStopping(monitor="loss", patience=3, min_delta=1e-3),
        ],
    )
    rates = history.history["learning_rate"]  # logged at each epoch's end, before any cut
    assert len(rates) < 200  # stopped early
    assert min(rates) < 0.01 and model.learning_rate < 0.01  # the plateau cut the rate

    # The rates logged are the rates applied: a float64 replay reaches the same weights.
    weight = bias = 0.0
    for rate in rates:
        r = weight * x.astype("float64") + bias - y
        weight, bias = weight - rate * 2 * np.mean(r * x), bias - rate * 2 * np.mean(r)
    np.testing.assert_allclose(model.get_parameters()[0], [weight], rtol=1e-5)
    np.testing.assert_allclose(model.get_parameters()[1], bias, rtol=1e-4)


def test_terminate_on_nan_beside_the_divergence_guard(tutorial_data):
    # The model's own guard stops a diverging fit before any NaN reaches the
    # logs; TerminateOnNaN in the same fit neither breaks nor hides that.
    x, y = tutorial_data
    model = keras_linreg.LinearRegression(learning_rate=1.0)
    model.compile()
    with pytest.raises(keras_linreg.DivergenceError, match="learning_rate") as error:
        model.fit(
            x,
            y,
            batch_size=100,
            epochs=500,
            shuffle=False,
            verbose=0,
            callbacks=[keras.callbacks.TerminateOnNaN()],
        )
    assert len(error.value.history.history["loss"]) < 500
    assert np.all(np.isfinite(model.get_parameters()[0]))


def test_keras_tensorboard_logs_the_rate_the_model_applies(tutorial_data, tmp_path):
    from tensorboard.backend.event_processing import event_accumulator

    x, y = tutorial_data
    model = keras_linreg.LinearRegression(learning_rate=0.0125)
    model.compile()  # stock compile() would log RMSprop's unused 0.001 here
    model.fit(
        x,
        y,
        epochs=2,
        verbose=0,
        callbacks=[keras.callbacks.TensorBoard(log_dir=str(tmp_path), write_graph=False)],
    )
    events = event_accumulator.EventAccumulator(
        str(tmp_path / "train"), size_guidance={event_accumulator.TENSORS: 0}
    ).Reload()
    rates = [
        float(tf.make_ndarray(event.tensor_proto))
        for event in events.Tensors("epoch_learning_rate")
    ]
    np.testing.assert_allclose(rates, [0.0125, 0.0125], rtol=1e-6)
