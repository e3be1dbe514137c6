"""Feature standardization for `LinearRegression(standardize=True)`.

Plain gradient descent on raw features is slow when the features are far from
zero mean and unit scale: the Hessian of the mean squared error,
`H = (2/n) XᵀX` for the design matrix `X = [x, 1]`, is then badly conditioned
(condition number ≈ 138 for the tutorial's `x = linspace(0, 10, 100)`), and a
step size small enough for its largest eigenvalue barely moves along its
smallest one. With `standardize=True` the model learns on

```
z = (x - mean) / std
```

per feature, whose Hessian is `2·I` on the slopes when the features are
uncorrelated, so a learning rate near 0.5 converges in a handful of epochs.

The model has trainable weights `standardized_slope` (`w`, shape
`(n_features,)`) and `standardized_intercept` (`b`, shape `()`) acting on `z`,
and predicts

```
y_pred = z · w + b = x · (w / std) + (b - Σ_j w_j · mean_j / std_j)
```

so in the units of the data

```
slope     = w / std
intercept = b - Σ_j w_j · mean_j / std_j
```

which is what `model.slope`, `model.intercept` (read-only tensors) and
`model.get_parameters()` (float64) return. Training stays plain SGD,
`v.assign_sub(learning_rate * gradient)`, on `w` and `b`; since the mapping is
an invertible affine reparametrisation, the least-squares optimum in raw units
is the same, only the path to it changes.

The statistics are non-trainable weights of the model, so `.keras` files,
`BackupAndRestore` and exported SavedModels (which trace `model.call`) carry
them:

- `feature_mean`, `(n_features,)`: the mean of each feature;
- `feature_std`, `(n_features,)`: its population standard deviation (ddof 0),
  or exactly 1 for a constant feature (std 0), whose mean is then its value,
  so its `z` is exactly 0, its `w` gets no gradient and keeps its initial
  value, and its effect is absorbed by the intercept (the prediction is the
  least-squares one; the raw slope of that feature is its initial value, 0 by
  default, where `least_squares` picks the minimum-norm split);
- `adapted_rows`, `()` int64: the number of rows they came from, 0 until the
  model is adapted.

Both statistics are of the unweighted rows: they only choose the coordinates
the model learns in, not the optimum, so `sample_weight` does not enter them.
They come from `model.adapt(data)` (one pass over an array or a batched
`tf.data.Dataset`), or automatically at the first `fit` on in-memory arrays
(the training rows only, i.e. before a `validation_split`).

Under `tf.distribute`, the statistics are global: they are computed on the
host, in float64, over the whole dataset before training starts (by `adapt` or
the first `fit`, outside `strategy.run`), and assigned in cross-replica
context, which writes the same values to every replica's copy; the weights use
`aggregation="only_first_replica"`, as `slope` and `intercept` do. A
per-replica statistic would give each replica different coordinates and make
the all-reduced gradient meaningless, so they are never computed inside a
step.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_linreg import inputs

TRAINABLE_WEIGHT_NAMES = ("standardized_slope", "standardized_intercept")
_RAW_WEIGHT_NAMES = ("slope", "intercept")

# Rows per chunk when an in-memory array is reduced in float64, so adapting a
# large float32 array does not double its memory.
_CHUNK_ROWS = 65536


def trainable_weight_names(standardize):
    """Names of the trainable `(slope, intercept)` weights of a model."""
    return TRAINABLE_WEIGHT_NAMES if standardize else _RAW_WEIGHT_NAMES


def add_statistics(model, n_features):
    """Creates the non-trainable statistics weights of a standardizing model.

    Args:
        model: The `LinearRegression` being built.
        n_features: The number of features.

    Returns:
        `(feature_mean, feature_std, adapted_rows)`, initialised to the
        identity transform (mean 0, std 1) and 0 rows.
    """
    common = {"trainable": False, "aggregation": "only_first_replica"}
    mean = model.add_weight(
        name="feature_mean", shape=(n_features,), initializer="zeros", **common
    )
    std = model.add_weight(name="feature_std", shape=(n_features,), initializer="ones", **common)
    rows = model.add_weight(
        name="adapted_rows", shape=(), initializer="zeros", dtype="int64", **common
    )
    return mean, std, rows


def standardize(model, x):
    """`(x - mean) / std` with the model's stored statistics; `x` is `(n, k)`."""
    mean = tf.cast(model.feature_mean, x.dtype)
    std = tf.cast(model.feature_std, x.dtype)
    return (x - mean) / std


def raw_slope(model):
    """The raw-unit slope `w / std` as a read-only tensor."""
    return model._trainable_slope / model.feature_std


def raw_intercept(model):
    """The raw-unit intercept `b - Σ w · mean / std` as a read-only tensor."""
    w = model._trainable_slope
    return model._trainable_intercept - tf.reduce_sum(w * model.feature_mean / model.feature_std)


def raw_parameters(model):
    """`(slope, intercept)` in raw units, computed in float64 from the weights."""
    w, b, mean, std = _stored_values(model)
    return w / std, float(b - np.sum(w * mean / std))


def is_adapted(model):
    """Whether the model's statistics have been set (by `adapt` or a load)."""
    return int(keras.ops.convert_to_numpy(model.adapted_rows)) > 0


def adapt(model, data, steps=None):
    """Sets the model's statistics from `data`, keeping its predictions.

    One pass over `data` accumulates, per feature and in float64, the row
    count, mean and sum of squared deviations (Chan et al.'s pairwise update:
    numerically stable, and the same up to rounding however the rows are
    batched), and the minimum and maximum (a
    feature is constant when they are equal). The trainable weights are then
    re-expressed in the new coordinates,

    ```
    w' = slope · std'
    b' = intercept + Σ slope · mean'
    ```

    so that `model.slope`, `model.intercept` and the predictions are the same
    before and after: adapting a trained model only changes the coordinates
    it goes on learning in, and the initializers set the raw-unit starting
    point.

    Args:
        model: A `LinearRegression(standardize=True)`; built from the data's
            shape if not yet.
        data: Features, `(n,)` or `(n, n_features)`: a NumPy array, tensor,
            pandas object or list; or a batched `tf.data.Dataset` or other
            iterable of batches, yielding `x` or `(x, y)` or
            `(x, y, sample_weight)`.
        steps: Optional number of batches to draw from a dataset (needed for
            a repeating one). Defaults to the whole dataset.

    Raises:
        ValueError: if the model does not standardize, the data is empty,
            non-finite, of the wrong shape, or not batched.
    """
    if not model.standardize:
        raise ValueError(
            "`adapt()` sets the statistics of a standardizing model, but this "
            "LinearRegression has standardize=False. Construct it with "
            "`LinearRegression(standardize=True)`."
        )
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ValueError(
            "Received an invalid value for `steps`, expected a positive integer "
            f"or None. Received: steps={steps!r}"
        )
    moments = _Moments()
    if inputs.is_in_memory(data):
        features = _as_matrix(data)
        for start in range(0, len(features), _CHUNK_ROWS):
            moments.update(features[start : start + _CHUNK_ROWS])
    else:
        if isinstance(data, tf.distribute.DistributedDataset):
            raise ValueError(
                "Received a distributed dataset: `adapt()` needs the whole, "
                "undistributed dataset, so the statistics are global. Pass the "
                "`tf.data.Dataset` before `strategy.experimental_distribute_dataset`."
            )
        for i, batch in enumerate(data):
            if steps is not None and i >= steps:
                break
            x, _, _ = keras.utils.unpack_x_y_sample_weight(batch)
            moments.update(_as_matrix(x, batched=True))
    if moments.count == 0:
        raise ValueError("Received empty data: `adapt()` needs at least one row.")
    mean, std = moments.statistics()
    if not model.built:
        # Under the strategy the model was created in, so the weights are
        # mirrored like those `fit` would build.
        with model.distribute_strategy.scope():
            model.build((None, len(mean)))
    if len(mean) != model.n_features:
        raise ValueError(
            f"Received data with {len(mean)} features, but this model has "
            f"n_features={model.n_features}."
        )
    _assign(model, mean, std, moments.count)


def adapt_before_fit(model, x, validation_split=0.0):
    """At `fit`: adapts on the training rows of in-memory `x`, if not adapted.

    A no-op for `standardize=False` models and for models already adapted
    (by `adapt`, an earlier `fit`, or loading). `fit` on a dataset, generator
    or `PyDataset` cannot be read twice (once for the statistics, once for
    training) in general, so it must be adapted first.

    Raises:
        ValueError: for a standardizing, unadapted model and data that is not
            an in-memory array.
    """
    if not model.standardize or (model.built and is_adapted(model)):
        return
    if not inputs.is_in_memory(x):
        raise ValueError(
            "This LinearRegression has standardize=True but its feature "
            "statistics are not set, and `fit` received "
            f"{type(x).__name__} data, which it cannot read once for them "
            "before training. Call `model.adapt(dataset)` before `fit` "
            "(it reads `x` from `x` or `(x, y[, sample_weight])` batches), or "
            "pass in-memory arrays, whose statistics `fit` computes itself."
        )
    features = _as_matrix(x)
    adapt(model, features[: inputs.split_point(len(features), validation_split)])


class _Moments:
    """Per-feature count, mean, sum of squared deviations, min and max."""

    def __init__(self):
        self.count = 0
        self.mean = self.m2 = self.min = self.max = None

    def update(self, x):
        n = len(x)
        if n == 0:
            return
        if not np.all(np.isfinite(x)):
            raise ValueError(
                "Received non-finite values (NaN or inf) in `x`: feature "
                "statistics need finite data."
            )
        mean = x.mean(axis=0)
        m2 = np.square(x - mean).sum(axis=0)
        if self.count == 0:
            self.count, self.mean, self.m2 = n, mean, m2
            self.min, self.max = x.min(axis=0), x.max(axis=0)
            return
        if x.shape[1] != len(self.mean):
            raise ValueError(
                f"Received batches with {len(self.mean)} and {x.shape[1]} "
                "features: every batch must have the same number of features."
            )
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + np.square(delta) * (self.count * n / total)
        self.count = total
        self.min = np.minimum(self.min, x.min(axis=0))
        self.max = np.maximum(self.max, x.max(axis=0))

    def statistics(self):
        constant = self.min == self.max
        mean = np.where(constant, self.min, self.mean)
        std = np.where(constant, 1.0, np.sqrt(self.m2 / self.count))
        return mean, std


def _assign(model, mean, std, count):
    """Stores the statistics, re-expressing `w`, `b` to keep raw parameters."""
    slope, intercept = raw_parameters(model)
    # Round through the variables' dtype first, so w' and b' are computed
    # with the statistics the model will really use.
    model.feature_mean.assign(mean.astype(model.feature_mean.dtype))
    model.feature_std.assign(std.astype(model.feature_std.dtype))
    _, _, mean, std = _stored_values(model)
    model._trainable_slope.assign((slope * std).astype(model._trainable_slope.dtype))
    model._trainable_intercept.assign(
        np.asarray(intercept + np.sum(slope * mean), dtype=model._trainable_intercept.dtype)
    )
    model.adapted_rows.assign(count)


def _stored_values(model):
    def value(v):
        return keras.ops.convert_to_numpy(v).astype(np.float64)

    return (
        value(model._trainable_slope),
        float(value(model._trainable_intercept)),
        value(model.feature_mean),
        value(model.feature_std),
    )


def _as_matrix(x, batched=False):
    """Features as a float64 `(n, n_features)` array; `(n,)` is one feature."""
    if tf.is_tensor(x):
        x = keras.ops.convert_to_numpy(x)
    try:
        x = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(
            "Received an invalid `x`, expected numeric features of shape `(n,)` "
            f"or `(n, n_features)`. Received: {type(x).__name__} ({error})"
        ) from None
    if x.ndim == 1:
        return x[:, None]
    if x.ndim != 2:
        hint = (
            " A dataset must be batched (`dataset.batch(...)`): each element "
            "is one batch of rows."
            if batched and x.ndim == 0
            else ""
        )
        raise ValueError(
            "Received an invalid `x`, expected shape `(n,)` or `(n, n_features)`. "
            f"Received: x.shape={x.shape}.{hint}"
        )
    return x
