"""`fit` on `dataset_from_files` runs each epoch in one graph call (keras_linreg/_whole_epochs.py).

References: a NumPy loop of the same SGD steps over the same batches, and Keras' own
one-step-per-call loop (forced by a callback that watches every batch).
"""

import keras
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import keras_linreg
from keras_linreg.data import dataset_from_files

_ROWS, _BATCH, _RATE = 1000, 96, 0.05


def _parquet(tmp_path, rows=_ROWS):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(rows, 3)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5]) + 0.3 + rng.normal(0, 0.1, rows)).astype(np.float32)
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "y": y}), path,
                   row_group_size=300)
    return str(path), x, y


class _Watch(keras.callbacks.Callback):
    """Records the model's steps per execution at each epoch's end; with `batches`, it
    also overrides `on_train_batch_end` (so Keras' one-step loop runs) and counts."""

    def __init__(self, batches=False):
        super().__init__()
        self.executions, self.batches = [], 0
        if batches:
            self.on_train_batch_end = self._count

    def _count(self, batch, logs=None):
        self.batches += 1

    def on_epoch_end(self, epoch, logs=None):
        self.executions.append(self.model.steps_per_execution)


def _model():
    model = keras_linreg.LinearRegression(learning_rate=_RATE)
    model.compile()
    return model


def test_one_execution_per_epoch_equals_keras_steps_and_a_numpy_loop(tmp_path):
    path, x, y = _parquet(tmp_path)
    steps = -(-_ROWS // _BATCH)
    fitted = {}
    for name, watch in (("whole", _Watch()), ("keras", _Watch(batches=True))):
        model = _model()
        data = dataset_from_files(path, target="y", batch_size=_BATCH, shuffle=True, seed=4)
        validation = dataset_from_files(path, target="y", batch_size=250)
        history = model.fit(data, epochs=3, verbose=0, callbacks=[watch],
                            validation_data=validation)
        fitted[name] = (model, history.history, watch)
        assert model.steps_per_execution == 1  # the compiled value, back after fit
    whole, keras_loop = fitted["whole"], fitted["keras"]
    assert whole[2].executions == [steps] * 3  # the epoch ran as one execution
    assert keras_loop[2].executions == [1] * 3 and keras_loop[2].batches == 3 * steps
    np.testing.assert_array_equal(whole[0].slope.numpy(), keras_loop[0].slope.numpy())
    np.testing.assert_array_equal(whole[0].intercept.numpy(), keras_loop[0].intercept.numpy())
    assert whole[1] == keras_loop[1]  # loss and val_loss, every epoch

    # The same SGD steps by hand over the dataset's own batches (its shuffled order).
    reader = dataset_from_files(path, target="y", batch_size=_BATCH, shuffle=True, seed=4)
    slope, intercept = np.zeros(3), 0.0
    for _ in range(3):
        for xb, yb in reader:
            xb, yb = xb.numpy().astype(np.float64), yb.numpy().astype(np.float64)
            residual = xb @ slope + intercept - yb
            slope = slope - _RATE * 2 * xb.T @ residual / len(yb)
            intercept = intercept - _RATE * 2 * residual.mean()
    np.testing.assert_allclose(whole[0].slope.numpy(), slope, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(whole[0].intercept.numpy(), intercept, rtol=1e-5, atol=1e-6)
    final = np.mean((x @ slope + intercept - y) ** 2)
    np.testing.assert_allclose(whole[1]["val_loss"][-1], final, rtol=1e-4)


def test_traced_once_per_compile_and_other_inputs_keep_keras_steps(tmp_path):
    path, x, y = _parquet(tmp_path)
    model = _model()
    data = dataset_from_files(path, target="y", batch_size=_BATCH)
    model.fit(data, epochs=1, verbose=0)
    functions = model._whole_epoch_functions.functions(model)
    assert list(functions) == [-(-_ROWS // _BATCH)]
    traced = functions[-(-_ROWS // _BATCH)]
    model.fit(data, epochs=1, verbose=0)
    assert model._whole_epoch_functions.functions(model)[-(-_ROWS // _BATCH)] == traced
    model.compile()  # new optimizer state: traced anew
    assert model._whole_epoch_functions.functions(model) == {}

    # Unknown length (CSV), `steps_per_epoch`, or a batch hook: Keras' own steps.
    csv = tmp_path / "d.csv"
    csv.write_text("a,b,c,y\n" + "".join(f"{r[0]},{r[1]},{r[2]},{v}\n"
                                          for r, v in zip(x, y, strict=True)))
    for dataset, arguments in (
        (dataset_from_files(str(csv), target="y", batch_size=_BATCH), {}),
        (data, {"steps_per_epoch": 4}),
    ):
        watch = _Watch()
        model.fit(dataset, epochs=1, verbose=0, callbacks=[watch], **arguments)
        assert watch.executions == [1]


@pytest.mark.parametrize("shuffle", [False, True])
def test_backup_and_restore_resumes_whole_epochs_exactly(tmp_path, shuffle):
    """Interrupted after epoch 1, resumed with a new dataset (as a restarted process
    makes): the same weights and losses as a run never interrupted. Shuffled, epoch
    `e` reads the dataset's pass `e` (data.epoch_passes), so the orders match too."""
    path, _, _ = _parquet(tmp_path)

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("interrupted")

    def data():
        return dataset_from_files(path, target="y", batch_size=_BATCH, shuffle=shuffle, seed=9)

    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    model = _model()
    watch = _Watch()
    with pytest.raises(RuntimeError, match="interrupted"):
        model.fit(data(), epochs=4, verbose=0, callbacks=[backup, watch, Interrupt()])
    resumed = _model()
    history = resumed.fit(data(), epochs=4, verbose=0, callbacks=[backup, watch])
    # BackupAndRestore saving per epoch watches no batch: whole epochs, before and after.
    assert watch.executions == [-(-_ROWS // _BATCH)] * 4
    reference = _model()
    full = reference.fit(data(), epochs=4, verbose=0)
    assert len(history.history["loss"]) == 2  # epochs 2 and 3: 0 and 1 were backed up
    np.testing.assert_allclose(resumed.slope.numpy(), reference.slope.numpy(), rtol=1e-6)
    np.testing.assert_allclose(history.history["loss"], full.history["loss"][2:], rtol=1e-6)


def test_weighted_batches_and_csv_validation_equal_keras_steps(tmp_path):
    """(x, y, w) batches, and validation on a CSV dataset (unknown length) run with the
    training's steps per execution: the same weights and losses as Keras' own steps."""
    rng = np.random.default_rng(8)
    x = rng.normal(size=(700, 2)).astype(np.float32)
    y = (x @ np.array([0.5, 1.5]) - 1.0).astype(np.float32)
    w = rng.uniform(0.5, 2.0, 700).astype(np.float32)
    path = tmp_path / "w.parquet"
    pq.write_table(pa.table({"a": x[:, 0], "b": x[:, 1], "y": y, "w": w}), path,
                   row_group_size=200)
    csv = tmp_path / "v.csv"
    csv.write_text("a,b,y\n" + "".join(f"{r[0]!r},{r[1]!r},{v!r}\n"
                                        for r, v in zip(x[:250].tolist(), y[:250].tolist(),
                                                        strict=True)))
    fitted = []
    for watch in (_Watch(), _Watch(batches=True)):
        model = _model()
        data = dataset_from_files(str(path), target="y", sample_weight="w", batch_size=64)
        validation = dataset_from_files(str(csv), target="y", batch_size=100)
        history = model.fit(data, epochs=2, verbose=0, callbacks=[watch],
                            validation_data=validation)
        fitted.append((model.get_parameters(), history.history, watch.executions))
    assert fitted[0][2] == [11, 11] and fitted[1][2] == [1, 1]
    for a, b in zip(fitted[0][0], fitted[1][0], strict=True):
        np.testing.assert_array_equal(a, b)
    assert fitted[0][1] == fitted[1][1] and len(fitted[0][1]["val_loss"]) == 2


def test_validation_steps_and_a_callbacks_evaluate_see_the_steps_asked_for(tmp_path):
    """`validation_steps=2`, and `evaluate(..., steps=2)` / `predict(..., steps=2)` called
    by a callback during a whole-epoch fit, cover 2 batches (not an epoch's execution):
    the same as Keras' own steps and as NumPy on the first rows."""
    path, x, y = _parquet(tmp_path)
    steps = -(-_ROWS // _BATCH)

    class Probe(_Watch):
        def on_epoch_end(self, epoch, logs=None):
            super().on_epoch_end(epoch, logs)
            slope, intercept = (v.numpy().astype(np.float64) for v in
                                (self.model.slope, self.model.intercept))  # fmt: skip
            first = x[:100].astype(np.float64) @ slope + intercept
            self.expected = float(np.mean((first - y[:100]) ** 2))
            self.evaluated = self.model.evaluate(x, y, batch_size=50, steps=2, verbose=0)
            self.predicted = self.model.predict(x, batch_size=50, steps=2, verbose=0)
            self.first = first

    probe = Probe()
    model = _model()
    model.fit(dataset_from_files(path, target="y", batch_size=_BATCH), epochs=2, verbose=0,
              callbacks=[probe, keras.callbacks.ModelCheckpoint(str(tmp_path / "m.keras"))])
    assert probe.executions == [steps] * 2  # whole epochs (ModelCheckpoint saves per epoch)
    np.testing.assert_allclose(probe.evaluated, probe.expected, rtol=1e-5)
    assert probe.predicted.shape == (100,)
    np.testing.assert_allclose(probe.predicted, probe.first, rtol=1e-5, atol=1e-6)
    assert model.steps_per_execution == 1 and (tmp_path / "m.keras").exists()

    histories = []
    for watch in (_Watch(), _Watch(batches=True)):
        model = _model()
        history = model.fit(
            dataset_from_files(path, target="y", batch_size=_BATCH), epochs=2, verbose=0,
            callbacks=[watch], validation_steps=2,
            validation_data=dataset_from_files(path, target="y", batch_size=50),
        )  # fmt: skip
        assert watch.executions == [1, 1]  # validation_steps: Keras' own steps
        histories.append(history.history)
    assert histories[0] == histories[1]
    slope, intercept = (v.numpy().astype(np.float64) for v in (model.slope, model.intercept))
    first = x[:100].astype(np.float64) @ slope + intercept
    np.testing.assert_allclose(histories[0]["val_loss"][-1],
                               np.mean((first - y[:100]) ** 2), rtol=1e-5)  # fmt: skip
