"""`LinearRegression`: a Keras model that trains itself with plain SGD."""

from __future__ import annotations

import contextlib

import keras
import numpy as np
import tensorflow as tf

from keras_linreg import (
    _keras_internals,
    _sharding,
    _whole_epochs,
    divergence,
    fast_fit,
    inputs,
    standardization,
)
from keras_linreg import regularization as _regularization
from keras_linreg.data import epoch_passes, raising_file_errors
from keras_linreg.learning_rate import (
    AUTO,
    LearningRateState,
    validate_learning_rate,
)

# A standardizing model's own variables in files written before the
# `Standardization` layer: w, b and the three statistics.
_OLD_LAYOUT_VARIABLES = 5
_MSE_NAMES = ("mse", "mean_squared_error", "MeanSquaredError")
_NOT_BUILT = (
    "`{name}` does not exist before the LinearRegression model is built: fit it, "
    "call it on data, or construct it with `n_features=`."
)


@keras.saving.register_keras_serializable(package="keras_linreg")
class LinearRegression(keras.Model):
    """Linear regression `y = x · slope + intercept`, fitted by plain SGD.

    The model has two trainable weights, `slope` of shape `(n_features,)` and
    `intercept` of shape `()` (only `slope` with `fit_intercept=False`: the
    fit goes through the origin, `y = x · slope`). `x` may be 1-D, `(n,)`
    (one feature), or 2-D, `(n, n_features)`; the prediction has shape `(n,)`.

    Each training step computes, for a batch of `n` rows with optional sample
    weights `w` (1 when not given), the mean squared error

    ```
    y_pred = x · slope + intercept
    loss   = sum(w * (y_pred - y) ** 2) / n
    ```

    under `tf.GradientTape`, takes its exact gradient `g` and applies plain
    gradient descent to each weight:

    ```
    w = w - learning_rate * g
    ```

    No optimizer does the update: `model.optimizer` is a `LearningRateState`
    that only holds the learning rate and the step counter, so Keras'
    learning-rate callbacks and `keras.callbacks.TensorBoard` see and set the
    rate the model really applies.

    Under a `tf.distribute` strategy, the step is the global batch's: each
    replica sums its weighted squared errors, their gradients and its row
    count, one cross-replica all-reduce adds them up, and every replica
    applies the same update `learning_rate * sum(grads) / sum(n)`. Uneven
    batches (a short last batch split over replicas) give the same result as
    one device.

    An epoch's `loss` is the size-weighted mean of its batch losses, so with
    one batch per epoch `history.history["loss"][i]` is the loss at the
    weights *before* update `i`, as in a hand-written GradientTape loop.

    Args:
        n_features: Optional number of features. When given, the weights are
            created at once (Keras' `BackupAndRestore` needs a built model);
            otherwise at the first call, from the input's shape.
        learning_rate: A float > 0, a
            `keras.optimizers.schedules.LearningRateSchedule` of the step
            counter, or `"auto"`: at the first `fit`, from the curvature of
            the loss on the training rows and the batch size (`1 / λ_max` of
            its Hessian full batch, less for mini-batches; see
            `keras_linreg.learning_rate.auto_learning_rate`), for in-memory
            data or a `dataset_from_files` dataset (one pass over its files);
            saved with the model once computed. Defaults to 0.01 (the
            tutorial's rate).
        slope_initializer: Initializer for `slope` (a Keras initializer name
            or object). Defaults to `"zeros"`.
        intercept_initializer: Initializer for `intercept`. Defaults to
            `"zeros"`.
        feature_names: Optional sequence of `n_features` column names. They
            travel with `.keras` files and exports, and name the slopes in
            logs and reports. `fit` on a pandas DataFrame records its column
            names when none were given; `fit`, `evaluate` and `predict` on a
            DataFrame then select the columns by name (any order, extra
            columns ignored; a missing one is an error). Arrays stay
            positional.
        standardize: If True, learn on standardized features
            `(x - mean) / std`, with statistics from `model.adapt(x)` or the
            first `fit` on arrays; `slope` and `intercept` are then read-only
            raw-unit values derived from the trainable `standardized_slope`
            `w` and `standardized_intercept` `b`: `slope = w / std`,
            `intercept = b - Σ w · mean / std` (see
            `docs/design/standardization.md`). Defaults to False. With
            `fit_intercept=False` the features are scaled without centering,
            `z = x / rms` with `rms = sqrt(mean(x²))` (centering needs an
            intercept), and `slope = w / rms` (see `docs/no-intercept.md`).
        slope_regularizer: Optional Keras regularizer of the slope (`"l1"`,
            `"l2"`, `"l1_l2"` or a `keras.regularizers.Regularizer`); see
            `docs/regularization.md`.
        fit_intercept: If True (default), learn `intercept`. If False, the
            model is `y = x · slope`: it has no intercept variable at all
            (nothing to train, save or export), `intercept` reads as the
            constant 0.0, and `intercept_initializer` is ignored (as Keras'
            `Dense(use_bias=False)` ignores `bias_initializer`).
        **kwargs: Passed to `keras.Model` (e.g. `name`).

    Example:

    ```python
    import numpy as np
    import keras_linreg

    x = np.linspace(0, 10, 100, dtype="float32")
    y = x + np.random.default_rng(0).normal(0, 1, 100).astype("float32")
    model = keras_linreg.LinearRegression(learning_rate=0.01)
    model.compile()
    model.fit(x, y, batch_size=100, epochs=100, shuffle=False, verbose=0)
    model.slope, model.intercept
    ```
    """

    def __init__(
        self,
        n_features=None,
        learning_rate=0.01,
        slope_initializer="zeros",
        intercept_initializer="zeros",
        feature_names=None,
        standardize=False,
        slope_regularizer=None,
        fit_intercept=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.slope_regularizer = _regularization.get(slope_regularizer)
        if not isinstance(fit_intercept, bool):
            raise ValueError(
                "Received an invalid value for `fit_intercept`, expected a bool. "
                f"Received: fit_intercept={fit_intercept!r}"
            )
        self.fit_intercept = fit_intercept
        if not isinstance(standardize, bool):
            raise ValueError(
                "Received an invalid value for `standardize`, expected a bool. "
                f"Received: standardize={standardize!r}"
            )
        self.standardize = standardize
        if n_features is not None and (
            isinstance(n_features, bool)
            or not isinstance(n_features, int)
            or n_features < 1
        ):
            raise ValueError(
                "Received an invalid value for `n_features`, expected a "
                f"positive integer or None. Received: n_features={n_features!r}"
            )
        if feature_names is not None:
            feature_names = tuple(feature_names)
            if not all(isinstance(name, str) for name in feature_names):
                raise ValueError(
                    "Received an invalid value for `feature_names`, expected a "
                    f"sequence of strings. Received: feature_names={feature_names!r}"
                )
            if len(set(feature_names)) != len(feature_names):
                raise ValueError(
                    "Received an invalid value for `feature_names`, expected "
                    f"unique names. Received: feature_names={feature_names!r}"
                )
            if n_features is None:
                n_features = len(feature_names)
            if len(feature_names) != n_features:
                raise ValueError(
                    "Received an invalid value for `feature_names`, expected "
                    f"{n_features} names (one per feature). "
                    f"Received: feature_names={feature_names!r}"
                )
        self.learning_rate_config = validate_learning_rate(learning_rate)
        self.slope_initializer = keras.initializers.get(slope_initializer)
        self.intercept_initializer = keras.initializers.get(intercept_initializer)
        self.feature_names = feature_names
        self.n_features = n_features
        # Our own tracker (the Keras guide's idiom): Keras' built-in one
        # averages per-replica losses, which is not the global-batch loss.
        self.loss_tracker = keras.metrics.Mean(name="loss")
        if self.slope_regularizer is not None:
            # `loss` is the objective, data loss + penalty; both parts too.
            self.data_loss_tracker = keras.metrics.Mean(name="data_loss")
            self.penalty_tracker = keras.metrics.Mean(name="penalty")
        # The `Standardization` layer of a standardize=True model, from build.
        self.standardization = None
        # Training state Keras must neither track nor save (the divergence guard's
        # variables, the fast path's traced functions) lives in plain Python objects:
        # Keras' attribute tracker and TensorFlow's AutoTrackable only follow
        # variables, layers, metrics and containers, so these never reach
        # `model.weights`, `.keras` files, checkpoints or exports.
        self._divergence_guard = divergence.DivergenceGuard()
        self._fast_fit_functions = fast_fit.FunctionCache()
        # Keras' train/test functions for whole epochs of file datasets (_whole_epochs.py).
        self._whole_epoch_functions = fast_fit.FunctionCache()
        if n_features is not None:
            self.build((None, n_features))

    # ------------------------------------------------------------------ build
    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) not in (1, 2) or (
            len(input_shape) == 2 and input_shape[-1] is None
        ):
            raise ValueError(
                "Received an invalid input shape, expected `(n,)` (one feature) "
                "or `(n, n_features)` with a known number of features. "
                f"Received: input_shape={input_shape}"
            )
        n_features = 1 if len(input_shape) == 1 else int(input_shape[-1])
        if self.n_features is not None and n_features != self.n_features:
            raise ValueError(
                f"This model has n_features={self.n_features}, but was built "
                f"with input_shape={input_shape}."
            )
        self.n_features = n_features
        # "only_first_replica": every replica applies the same all-reduced
        # update, so under tf.distribute the first replica's value is the
        # value (an exact broadcast; "mean" would round for 3 replicas).
        # The trainable weights act on the features the model learns on:
        # raw, or standardized (then the statistics are weights too).
        slope_name, intercept_name = standardization.trainable_weight_names(self.standardize)
        self._trainable_slope = self.add_weight(
            name=slope_name,
            shape=(n_features,),
            initializer=self.slope_initializer,
            regularizer=self.slope_regularizer,  # its penalty shows in `model.losses`
            aggregation="only_first_replica",
        )
        # Without an intercept there is no variable for it at all: nothing can
        # train, save, restore or export one (docs/no-intercept.md).
        self._trainable_intercept = None
        if self.fit_intercept:
            self._trainable_intercept = self.add_weight(
                name=intercept_name,
                shape=(),
                initializer=self.intercept_initializer,
                aggregation="only_first_replica",
            )
        if self.standardize:
            self.standardization = standardization.Standardization(
                center=self.fit_intercept, name="standardization", dtype=self.dtype_policy
            )
            self.standardization.build((None, n_features))
        self.built = True

    # ------------------------------------------------------------- inference
    def call(self, x):
        x = tf.convert_to_tensor(x)
        if x.dtype != self.compute_dtype:
            x = tf.cast(x, self.compute_dtype)
        if x.shape.rank == 1:
            x = x[:, tf.newaxis]
        if x.shape.rank != 2:
            raise ValueError(
                "Received an invalid `x`, expected shape `(n,)` or "
                f"`(n, {self.n_features})`. Received: x.shape={tuple(x.shape)}"
            )
        if x.shape[-1] is not None and x.shape[-1] != self.n_features:
            raise ValueError(
                f"Received `x` with {x.shape[-1]} features, but this model has "
                f"n_features={self.n_features}: expected shape "
                f"`(n, {self.n_features})`. Received: x.shape={tuple(x.shape)}"
            )
        if self.standardize:
            x = self.standardization(x)
        y = tf.linalg.matvec(x, self._trainable_slope)
        if self._trainable_intercept is None:
            return y
        return y + self._trainable_intercept

    def compute_output_shape(self, input_shape):
        return (input_shape[0],)

    # --------------------------------------------------------------- compile
    def compile(
        self,
        optimizer=None,
        loss=None,
        metrics=None,
        weighted_metrics=None,
        run_eagerly=False,
        steps_per_execution=1,
        jit_compile="auto",
        **kwargs,
    ):
        """Configures the model for training; `compile()` alone is enough.

        The model always minimises the (weighted) mean squared error with
        plain SGD at its own `learning_rate`, so:

        - `optimizer` must be None (a `LearningRateState` holding the
          model's `learning_rate` is created) or a `LearningRateState`
          (what `.keras` loading passes back). Any other optimizer raises
          instead of being silently ignored: set the rate with
          `LinearRegression(learning_rate=...)`.
        - `loss` must be None or mean squared error (`"mse"`,
          `"mean_squared_error"`, or a default `keras.losses.MeanSquaredError()`);
          any other loss raises.
        - `metrics` and `weighted_metrics` work as in `keras.Model.compile`:
          they see `y` and `y_pred` as `(n, 1)` columns (e.g.
          `keras.metrics.RootMeanSquaredError()`, `keras.metrics.R2Score()`).

        Other arguments are passed to `keras.Model.compile`.
        """
        if optimizer is None:
            rate = self.learning_rate_config
            # "auto" is resolved from the data at the first `fit`.
            optimizer = (
                LearningRateState(learning_rate=1.0, auto_pending=True)
                if rate == AUTO
                else LearningRateState(learning_rate=rate)
            )
        elif not isinstance(optimizer, LearningRateState):
            raise ValueError(
                "Received an invalid value for `optimizer`: LinearRegression "
                "applies plain SGD itself and takes no optimizer; set the rate "
                "with `LinearRegression(learning_rate=...)` and call `compile()` "
                f"without one. Received: optimizer={optimizer!r}"
            )
        if not _is_mse(loss):
            raise ValueError(
                "Received an invalid value for `loss`: LinearRegression always "
                "minimises the mean squared error; pass loss=None (or 'mse'). "
                f"Received: loss={loss!r}"
            )
        super().compile(
            optimizer=optimizer,
            loss=None,
            metrics=metrics,
            weighted_metrics=weighted_metrics,
            run_eagerly=run_eagerly,
            steps_per_execution=steps_per_execution,
            jit_compile=jit_compile,
            **kwargs,
        )

    def compile_from_config(self, config):
        # `keras.Model.compile_from_config` skips models that override
        # `compile` (with a warning); ours takes the same arguments back.
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    @property
    def metrics(self):
        # The loss tracker first, then what `compile(metrics=...)` added.
        # Keras' own loss tracker (also named "loss") is never updated here.
        own = [self.loss_tracker]
        if self.slope_regularizer is not None:
            own += [self.data_loss_tracker, self.penalty_tracker]
        return own + [m for m in super().metrics if m not in own and m.name != "loss"]

    @property
    def learning_rate(self):
        """The learning rate the next step applies (a float).

        After `compile()` this is `model.optimizer.learning_rate`, which
        `LearningRateScheduler`/`ReduceLROnPlateau` may have changed, or the
        schedule evaluated at the step counter; before, the configured value
        (a schedule evaluated at step 0).
        """
        rate = self.learning_rate_config
        if rate == AUTO and not (self.compiled and not self._auto_rate_pending()):
            return AUTO  # until the first `fit` has seen the data
        if self.compiled and isinstance(self.optimizer, LearningRateState):
            return _as_float(self.optimizer.learning_rate)
        if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
            return _as_float(rate(0))
        return rate

    # -------------------------------------------------------------- training
    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)

        # 1. Forward pass: this replica's sum of weighted squared errors.
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)  # builds the weights on first use
            local_sse, local_n = self._sum_of_squared_errors(y, y_pred, sample_weight)
        variables = self._trainable_parameters

        # 2. Gradients of the global-batch loss sse / n: sum the replicas'
        #    sse, row counts and d(sse)/dw in one all-reduce, then divide.
        #    A slope penalty's smooth part is added once, after the reduce
        #    (every replica holds the same slope), never once per replica.
        local_grads = tape.gradient(local_sse, variables)
        sse, n, grads = _sum_over_replicas((local_sse, local_n, local_grads))
        grads = [g / n for g in grads]
        penalty, l1 = None, 0.0
        if self.slope_regularizer is not None:
            penalty, grads, l1 = self._penalty_and_gradients(grads)

        # 3. Update: plain SGD, the same on every replica, w <- w - lr * g,
        #    then, for an L1 penalty, the soft-threshold
        #    slope <- sign(v) * max(|v| - lr * l1, 0) (a proximal step, so
        #    lasso zeros are exact), and the step counter + 1. When the loss
        #    or the new weights are not finite, the last finite weights are
        #    kept instead and the divergence flag is set (divergence.py).
        learning_rate = tf.cast(self.optimizer.learning_rate, self.dtype)
        new_values = [v - learning_rate * g for v, g in zip(variables, grads, strict=True)]
        if l1:
            new_values[0] = _regularization.soft_threshold(
                new_values[0], learning_rate * tf.cast(l1, self.dtype)
            )
        loss = sse / n if penalty is None else sse / n + penalty
        self._divergence_guard.update(
            variables, new_values, loss=loss, iterations=self.optimizer.iterations
        )

        return self._update_metrics(y, y_pred, sample_weight, local_sse, local_n, penalty)

    def _penalty_and_gradients(self, grads):
        """The penalty at the current slope, the smooth gradient, and the L1 part.

        For Keras' own `L1`, `L2` and `L1L2`, the penalty
        `l1 · Σ|slope| + l2 · Σ slope²` contributes `2 · l2 · slope` to the
        slope's gradient and `l1` to the soft-threshold. Any other regularizer
        is differentiated as it is (smooth, no exact zeros).
        """
        slope = self._trainable_slope
        regularizer = self.slope_regularizer
        if _regularization.is_decomposable(regularizer):
            l1, l2 = _regularization.coefficients(regularizer)
            penalty = tf.cast(regularizer(tf.convert_to_tensor(slope)), self.dtype)
            if l2:
                grads = [grads[0] + 2.0 * tf.cast(l2, self.dtype) * slope, *grads[1:]]
            return penalty, grads, l1
        with tf.GradientTape() as tape:
            penalty = tf.cast(regularizer(slope), self.dtype)
        return penalty, [grads[0] + tape.gradient(penalty, slope), *grads[1:]], 0.0

    def test_step(self, data):
        # The same loss and metrics as train_step, without the update.
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        y_pred = self(x, training=False)
        local_sse, local_n = self._sum_of_squared_errors(y, y_pred, sample_weight)
        penalty = None
        if self.slope_regularizer is not None:
            penalty = tf.cast(self.slope_regularizer(self._trainable_slope), self.dtype)
        return self._update_metrics(y, y_pred, sample_weight, local_sse, local_n, penalty)

    # ------------------------------------------------------ fit and friends
    def fit(self, x=None, y=None, *args, **kwargs):
        """`keras.Model.fit`, with the arguments and behaviour of Keras, plus:

        1. bad in-memory data raises `ValueError` before any update (inputs.py);
        2. a `standardize=True` model not yet adapted gets its feature statistics
           from the training rows of in-memory `x` (standardization.py);
        3. in-memory arrays take the fast path (fast_fit.py: tensors placed once,
           one graph call per epoch); other inputs go to Keras' `fit`, which runs
           each epoch of a `dataset_from_files` dataset in one graph call when no
           callback watches single batches (_whole_epochs.py);
        4. a diverging run stops with the last good weights and raises
           `keras_linreg.DivergenceError` (divergence.py).
        """
        x, y, kwargs = inputs.check_fit_arguments(self, x, y, args, kwargs)
        inputs.build_from_data(self, x)
        # Bad data in files (keras_linreg.data) raises as itself.
        with raising_file_errors(x, kwargs.get("validation_data")), self._building_from(x):
            standardization.adapt_before_fit(self, x, kwargs.get("validation_split", 0.0))
            self._resolve_auto_learning_rate(x, kwargs)
            monitor = divergence.DivergenceMonitor(x, kwargs)
            kwargs["callbacks"] = _first(monitor, kwargs.get("callbacks"), self)
            passes = epoch_passes(x, kwargs)  # files: epoch e reads pass e (resume-exact)
            if passes is not None:
                kwargs["callbacks"] = _first(passes, kwargs["callbacks"], self)
            if fast_fit.applies(self, x, y, kwargs):
                history = fast_fit.fit(self, x, y, **kwargs)
            else:
                with _whole_epochs.whole_epochs(self, x, kwargs):
                    history = super().fit(x, y, **kwargs)
        monitor.raise_if_diverged(history)
        return history

    def _resolve_auto_learning_rate(self, x, kwargs):
        """Sets `learning_rate="auto"`'s rate from the training data, at the first fit."""
        if not (self.compiled and self._auto_rate_pending()):
            return
        if not (inputs.is_in_memory(x) or inputs.is_file_dataset(x)):
            raise ValueError(
                'Received an invalid value for `x`: learning_rate="auto" computes the '
                "rate from in-memory training data (NumPy arrays, tensors, pandas) or a "
                "keras_linreg.data.dataset_from_files dataset (one pass over its files), "
                "and cannot see another dataset or generator before training. Pass a number "
                "(e.g. keras_linreg.max_stable_learning_rate(x_sample) / 2). "
                f"Received: x of type {type(x).__name__}"
            )
        self.optimizer.learning_rate.assign(divergence.auto_learning_rate(self, x, kwargs))
        self.optimizer.auto_pending = False

    def _auto_rate_pending(self):
        return bool(getattr(self.optimizer, "auto_pending", False))

    def train_on_batch(self, *args, **kwargs):
        self._divergence_guard.rearm()  # a non-finite batch is skipped, not latched
        return super().train_on_batch(*args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        x, y, kwargs = inputs.check_evaluate_arguments(self, x, y, args, kwargs)
        # fit's own validation runs with fit's steps per execution; any other
        # evaluate (e.g. from a callback) with the compiled one (_whole_epochs.py).
        own = contextlib.nullcontext() if _keras_internals.is_fit_validation_pass(kwargs) else (
            _whole_epochs.compiled_steps(self))
        with raising_file_errors(x), self._building_from(x), own:
            return super().evaluate(x, y, **kwargs)

    def predict(self, x, *args, **kwargs):
        x, kwargs = inputs.check_predict_arguments(self, x, args, kwargs)
        with raising_file_errors(x), _whole_epochs.compiled_steps(self):
            return super().predict(x, **kwargs)

    def _sum_of_squared_errors(self, y, y_pred, sample_weight):
        """Returns `(sum(w * (y_pred - y)**2), n)` over this batch's rows."""
        y = _as_vector(y, "y", self.compute_dtype)
        residual = y_pred - y
        squared = tf.square(residual)
        if sample_weight is not None:
            squared = squared * _as_vector(sample_weight, "sample_weight", self.compute_dtype)
        n = tf.cast(tf.shape(y_pred)[0], self.compute_dtype)
        return tf.reduce_sum(squared), n

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """Updates the compiled metrics on `(n, 1)` columns and returns all results.

        Keras' regression metrics (e.g. `R2Score`) expect `(batch, outputs)`;
        this model's targets and predictions are `(n,)`. Keras' own build
        step calls this too, so the reshaping lives here.
        """
        y = _as_vector(y, "y", self.compute_dtype)[:, tf.newaxis]
        y_pred = tf.reshape(y_pred, [-1, 1])
        if sample_weight is not None:
            sample_weight = _as_vector(sample_weight, "sample_weight", self.compute_dtype)
        return super().compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def _update_metrics(self, y, y_pred, sample_weight, local_sse, local_n, penalty=None):
        # Mean weighted by rows: summed over batches (and replicas) this is
        # sum(sse) / sum(n), the data's MSE, however uneven the batches. A
        # penalty (the same on every replica) is weighted the same way, so it
        # is counted once per global batch.
        data_loss = tf.math.divide_no_nan(local_sse, local_n)
        if penalty is None:
            self.loss_tracker.update_state(data_loss, sample_weight=local_n)
        else:
            self.loss_tracker.update_state(data_loss + penalty, sample_weight=local_n)
            self.data_loss_tracker.update_state(data_loss, sample_weight=local_n)
            self.penalty_tracker.update_state(penalty, sample_weight=local_n)
        logs = self.compute_metrics(None, y, y_pred, sample_weight=sample_weight)
        return _keras_internals.reducible_logs(logs)  # for MultiWorkerMirroredStrategy

    @contextlib.contextmanager
    def _building_from(self, x):
        """Within: under a strategy, Keras builds from `x`'s batch spec, not a batch.

        Under a `tf.distribute` strategy, Keras' `fit` and `evaluate` read a
        first batch of their input to build (and then start over). For a
        dataset read from files (`keras_linreg.data`) that first batch is a
        pass of its own: an extra read of the first block, and, shuffled, it
        would shift every epoch to the next pass's order (epoch `k` reading
        pass `k + 1`, unlike one device). The spec of one replica's batch
        holds all that the build needs (shapes and dtypes).
        """
        spec = x.element_spec if inputs.is_file_dataset(x) else getattr(
            x, _sharding.BATCH_SPEC, None)
        outer = self.__dict__.get("_file_batch_spec")
        object.__setattr__(self, "_file_batch_spec", spec)  # not a tracked attribute
        try:
            yield
        finally:
            object.__setattr__(self, "_file_batch_spec", outer)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        spec = self.__dict__.get("_file_batch_spec")
        if iterator is not None and spec is not None:
            iterator, data_batch = None, spec  # see _building_from
        # Keras' own all-reduces the first input batch, which fails under
        # MultiWorkerMirroredStrategy and for uneven splits: see _keras_internals.
        return _keras_internals.maybe_symbolic_build(
            self, super()._maybe_symbolic_build, iterator, data_batch
        )

    # ------------------------------------------------------------ parameters
    @property
    def slope(self):
        """The slope in raw units, `(n_features,)`.

        The trainable variable itself with `standardize=False`; with True, a
        read-only tensor `w / std` derived from `standardized_slope`.
        """
        if not self.built:
            raise AttributeError(_NOT_BUILT.format(name="slope"))
        if self.standardize:
            return self._trainable_slope / self.standardization.feature_std
        return self._trainable_slope

    @property
    def intercept(self):
        """The intercept in raw units, `()`.

        The trainable variable itself with `standardize=False`; with True, a
        read-only tensor `b - Σ w · mean / std`; with `fit_intercept=False`,
        a constant tensor 0.0 (there is no intercept variable).
        """
        if not self.built:
            raise AttributeError(_NOT_BUILT.format(name="intercept"))
        if not self.fit_intercept:
            return tf.zeros((), dtype=self.dtype)
        if self.standardize:
            layer = self.standardization
            w = self._trainable_slope
            return self._trainable_intercept - tf.reduce_sum(
                w * layer.feature_mean / layer.feature_std
            )
        return self._trainable_intercept

    @property
    def _trainable_parameters(self):
        """The variables `train_step` updates: `[slope, intercept]` as learned,
        `[slope]` with `fit_intercept=False`."""
        if self._trainable_intercept is None:
            return [self._trainable_slope]
        return [self._trainable_slope, self._trainable_intercept]

    # The statistics of a standardizing model are its `Standardization` layer's.
    @property
    def feature_mean(self):
        """The feature means, `(n_features,)` (a variable; `standardize=True` only)."""
        return self._statistic("feature_mean")

    @property
    def feature_std(self):
        """The feature standard deviations, `(n_features,)` (a variable)."""
        return self._statistic("feature_std")

    @property
    def adapted_rows(self):
        """The rows the statistics came from, `()` int64, 0 until adapted (a variable)."""
        return self._statistic("adapted_rows")

    def _statistic(self, name):
        if not self.standardize:
            raise AttributeError(f"`{name}` exists only for LinearRegression(standardize=True).")
        if not self.built:
            raise AttributeError(_NOT_BUILT.format(name=name))
        return getattr(self.standardization, name)

    def adapt(self, data, steps=None):
        """Sets the feature statistics of a `standardize=True` model.

        One pass over `data` (see `keras_linreg.standardization.feature_statistics`;
        with `fit_intercept=False`, `center=False`: mean 0 and `std` the root
        mean square, so features are scaled but not centered):
        an array, or a batched `tf.data.Dataset` yielding `x` or
        `(x, y[, sample_weight])`. The model is built from the data's number
        of features if not yet, and its trainable weights `w`, `b` are
        re-expressed in the new coordinates,

        ```
        w' = slope · std'
        b' = intercept + Σ slope · mean'
        ```

        so the raw-unit `slope`, `intercept` and the predictions are the same
        before and after: adapting only changes the coordinates the model
        goes on learning in, and the initializers set the raw starting point.

        Args:
            data: Features, `(n,)` or `(n, n_features)`, or a batched dataset.
            steps: Optional number of batches to draw from a dataset (needed
                for a repeating one). Defaults to the whole dataset.

        Raises:
            ValueError: if the model does not standardize, or the data is
                empty, non-finite, of the wrong shape or not batched. Nothing
                is changed then.
        """
        if not self.standardize:
            raise ValueError(
                "`adapt()` sets the statistics of a standardizing model, but this "
                "LinearRegression has standardize=False. Construct it with "
                "`LinearRegression(standardize=True)`."
            )
        with raising_file_errors(data):
            mean, std, rows = standardization.feature_statistics(
                data, steps=steps, center=self.fit_intercept
            )
        if not self.built:
            # Under the strategy the model was created in, so the weights are
            # mirrored like those `fit` would build.
            with self.distribute_strategy.scope():
                self.build((None, len(mean)))
        if len(mean) != self.n_features:
            raise ValueError(
                f"Received data with {len(mean)} features, but this model has "
                f"n_features={self.n_features}."
            )
        slope, intercept = self.get_parameters()
        self.standardization.set_statistics(mean, std, rows)
        # With the statistics as stored (rounded to their dtype), w and b
        # reproduce the raw-unit parameters.
        mean, std = self.standardization.statistics()
        self._trainable_slope.assign((slope * std).astype(self._trainable_slope.dtype))
        if self._trainable_intercept is not None:
            self._trainable_intercept.assign(
                np.asarray(
                    intercept + np.sum(slope * mean), dtype=self._trainable_intercept.dtype
                )
            )

    def get_parameters(self):
        """Returns `(slope, intercept)` in raw units as float64 NumPy values.

        With `standardize=True`, computed in float64 from the weights:
        `slope = w / std`, `intercept = b - Σ w · mean / std`. With
        `fit_intercept=False` the intercept is exactly 0.0.
        """
        self._check_built("get_parameters")
        w = self._trainable_slope.numpy().astype(np.float64)
        if self._trainable_intercept is None:
            if self.standardize:
                _, std = self.standardization.statistics()
                return w / std, 0.0
            return w, 0.0
        b = float(self._trainable_intercept.numpy())
        if self.standardize:
            mean, std = self.standardization.statistics()
            return w / std, float(b - np.sum(w * mean / std))
        return w, b

    def _check_built(self, what):
        if not self.built:
            raise ValueError(
                f"This LinearRegression model has not been built yet, so `{what}` "
                "has nothing to use: fit it, call it on data, or construct it "
                "with `n_features=`."
            )

    # ----------------------------------------------------------- serialising
    def get_config(self):
        base_config = super().get_config()
        rate = self.learning_rate_config
        config = {
            "n_features": self.n_features,
            "learning_rate": (
                keras.saving.serialize_keras_object(rate)
                if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule)
                else rate
            ),
            "slope_initializer": keras.initializers.serialize(self.slope_initializer),
            "intercept_initializer": keras.initializers.serialize(
                self.intercept_initializer
            ),
            "feature_names": list(self.feature_names) if self.feature_names else None,
            "standardize": self.standardize,
            "slope_regularizer": (
                keras.regularizers.serialize(self.slope_regularizer)
                if self.slope_regularizer is not None
                else None
            ),
            "fit_intercept": self.fit_intercept,
        }
        return {**base_config, **config}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = keras.saving.deserialize_keras_object(
                config["learning_rate"]
            )
        return cls(**config)

    # ---------------------------------------------------- export and saving
    def load_own_variables(self, store):
        """Loads the weights of a `.keras` file, of this or the old layout.

        Files written before the `Standardization` layer (main 2541842) store
        a standardizing model's five variables `[w, b, feature_mean,
        feature_std, adapted_rows]` together in the model's own entry; the
        statistics go to the layer.
        """
        if self.standardize and len(store.keys()) == _OLD_LAYOUT_VARIABLES:
            self._trainable_slope.assign(store["0"])
            self._trainable_intercept.assign(store["1"])
            self.standardization.load_old_layout(store["2"], store["3"], store["4"])
            return
        super().load_own_variables(store)

    def export(self, filepath, format="tf_saved_model", verbose=None, input_signature=None,
               overwrite=False, **kwargs):
        """Exports the model for serving with the contract `x` -> `y`, atomically.

        `format="tf_saved_model"` goes to `keras_linreg.export_saved_model`
        (signature `serving_default`: `x` float32 `[None, n_features]` ->
        `y` float32 `[None]`, plus the stock `serve` endpoint), and
        `format="onnx"` to `keras_linreg.export_onnx` (one `.onnx` file,
        input `x` float32 `[n, n_features]`, output `y` float32 `[n]`; takes
        Keras' `opset_version=`). Both refuse an existing `filepath` unless
        `overwrite=True`. Other formats are Keras' own `export`.
        """
        if format not in ("tf_saved_model", "onnx"):
            return super().export(filepath, format=format, verbose=verbose,
                                  input_signature=input_signature, **kwargs)
        options = {"opset_version"} if format == "onnx" else set()
        if input_signature is not None or set(kwargs) - options:
            raise ValueError(
                "LinearRegression.export writes its own signature (`x` -> `y`) and takes "
                "no `input_signature` or backend options"
                + (" (except `opset_version`)" if options else "")
                + f". Received: input_signature={input_signature!r}, kwargs={sorted(kwargs)}"
            )
        verbose = True if verbose is None else verbose
        if format == "onnx":
            from keras_linreg.onnx_export import export_onnx

            return export_onnx(self, filepath, overwrite=overwrite, verbose=verbose, **kwargs)
        from keras_linreg.export import export_saved_model

        export_saved_model(self, filepath, overwrite=overwrite, verbose=verbose)

    def save(self, filepath, overwrite=True, zipped=None, **kwargs):
        """`keras.Model.save`, but local `.keras` files are written atomically.

        See `keras_linreg.save_model`. `overwrite=False` raises
        `FileExistsError` for an existing file instead of prompting.
        """
        from keras_linreg import export as export_module

        if not export_module._saves_atomically(filepath, zipped):  # .h5, hf://, file objects
            return super().save(filepath, overwrite=overwrite, zipped=zipped, **kwargs)
        export_module.save_model(self, filepath, overwrite=overwrite, **kwargs)


def _as_float(value):
    """A scalar variable or tensor as a Python float.

    Through a tensor's `.numpy()`, not `np.array(variable)`: `.keras` loading
    reads every property of the model, and NumPy 2 warns (a
    DeprecationWarning) on a Keras variable's `__array__`.
    """
    return float(tf.convert_to_tensor(value).numpy())


def _is_mse(loss):
    if loss is None:
        return True
    if isinstance(loss, str):
        return loss in _MSE_NAMES
    return (
        isinstance(loss, keras.losses.MeanSquaredError)
        and loss.reduction == "sum_over_batch_size"
    )


def _first(callback, callbacks, model):
    """`callbacks` (a list, None or a `CallbackList`) with `callback` first."""
    if isinstance(callbacks, keras.callbacks.CallbackList):
        callbacks.callbacks.insert(0, callback)
        callback.set_model(model)
        return callbacks
    return [callback, *(callbacks or [])]


def _as_vector(t, name, dtype):
    """`(n,)` or `(n, 1)` -> `(n,)`; anything else raises at trace time.

    `(n,)` minus `(n, 1)` would broadcast to `(n, n)`: never let it.
    """
    t = tf.convert_to_tensor(t)
    if t.dtype != dtype:
        t = tf.cast(t, dtype)
    if t.shape.rank == 2 and t.shape[-1] == 1:
        return t[:, 0]
    if t.shape.rank != 1:
        raise ValueError(
            f"Received an invalid `{name}`, expected shape `(n,)` or `(n, 1)`. "
            f"Received: {name}.shape={tuple(t.shape)}"
        )
    return t


def _sum_over_replicas(values):
    """Sums a nest of tensors over all replicas (identity on one device)."""
    context = tf.distribute.get_replica_context()
    if context is None:  # cross-replica context: nothing to reduce.
        return values
    return context.all_reduce(tf.distribute.ReduceOp.SUM, values)
