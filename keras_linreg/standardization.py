"""`Standardization`: the layer behind `LinearRegression(standardize=True)`.

Gradient descent on raw features far from zero mean and unit scale is slow
(an ill-conditioned Hessian); on `z = (x - mean) / std` it converges in a few
epochs. The layer owns the statistics (float64 on the host, global under
`tf.distribute`) and its `adapt`, as `keras.layers.Normalization` does; the
model learns on its output and reports parameters in raw units. Without an
intercept (`center=False`) the features are only scaled, by their root mean
square. Design notes: `docs/design/standardization.md`, `docs/no-intercept.md`.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_linreg import inputs

__all__ = ["Standardization", "adapt_before_fit", "feature_statistics", "trainable_weight_names"]

TRAINABLE_WEIGHT_NAMES = ("standardized_slope", "standardized_intercept")
_RAW_WEIGHT_NAMES = ("slope", "intercept")

# Rows per chunk when an in-memory array is reduced in float64, so adapting a
# large float32 array does not double its memory.
_CHUNK_ROWS = 65536


def trainable_weight_names(standardize):
    """Names of the trainable `(slope, intercept)` weights of a model."""
    return TRAINABLE_WEIGHT_NAMES if standardize else _RAW_WEIGHT_NAMES


@keras.saving.register_keras_serializable(package="keras_linreg")
class Standardization(keras.layers.Layer):
    """Standardizes each feature with statistics set by `adapt`.

    ```
    z = (x - mean) / std
    ```

    for `x` of shape `(n, n_features)` (or `(n,)`, one feature). `mean` is the
    mean of each feature and `std` its population standard deviation (ddof 0),
    both computed in float64 over the unweighted rows; a constant feature
    gets `std = 1` and `mean` its value, so its `z` is exactly 0. Until
    `adapt` the layer is the identity (mean 0, std 1).

    With `center=False` (the layer of a `LinearRegression(fit_intercept=False)`,
    where an offset would act as an intercept the model does not have) the
    layer only scales,

    ```
    z = x / rms,    rms = sqrt(mean(x²))
    ```

    `adapt` stores `mean = 0` and `std = rms` (1 for an all-zero feature), and
    `call` ignores `feature_mean`.

    The layer has three non-trainable weights, saved with `.keras` files and
    exports: `feature_mean` and `feature_std`, `(n_features,)`, and
    `adapted_rows`, `()` int64, the number of rows they came from (0 until
    adapted). They use `aggregation="only_first_replica"` and are assigned on
    the host, so under `tf.distribute` every replica holds the same, global
    statistics.

    Args:
        center: If True (default), subtract the mean; if False, only scale
            by the root mean square.
        **kwargs: Base layer arguments (e.g. `name`, `dtype`).

    Example:

    ```python
    import numpy as np
    from keras_linreg.standardization import Standardization

    layer = Standardization()
    layer.adapt(np.array([[1.0, 10.0], [3.0, 10.0]]))
    layer(np.array([[2.0, 10.0]]))  # [[0., 0.]]
    ```
    """

    def __init__(self, center=True, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(center, bool):
            raise ValueError(
                "Received an invalid value for `center`, expected a bool. "
                f"Received: center={center!r}"
            )
        self.center = center
        self.n_features = None
        self._loaded_from_old_layout = False

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) not in (1, 2) or (len(input_shape) == 2 and input_shape[-1] is None):
            raise ValueError(
                "Received an invalid input shape, expected `(n,)` (one feature) "
                "or `(n, n_features)` with a known number of features. "
                f"Received: input_shape={input_shape}"
            )
        self.n_features = 1 if len(input_shape) == 1 else int(input_shape[-1])
        common = {"trainable": False, "aggregation": "only_first_replica"}
        self.feature_mean = self.add_weight(
            name="feature_mean", shape=(self.n_features,), initializer="zeros", **common
        )
        self.feature_std = self.add_weight(
            name="feature_std", shape=(self.n_features,), initializer="ones", **common
        )
        self.adapted_rows = self.add_weight(
            name="adapted_rows", shape=(), initializer="zeros", dtype="int64", **common
        )

    def call(self, x):
        x = tf.convert_to_tensor(x)
        if x.shape.rank == 1:
            x = x[:, tf.newaxis]
        std = tf.cast(self.feature_std, x.dtype)
        if not self.center:
            return x / std
        mean = tf.cast(self.feature_mean, x.dtype)
        return (x - mean) / std

    def get_config(self):
        return {**super().get_config(), "center": self.center}

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        return input_shape if len(input_shape) == 2 else (*input_shape, 1)

    @property
    def is_adapted(self):
        """Whether the statistics have been set (by `adapt` or a load)."""
        return self.built and int(self.adapted_rows.numpy()) > 0

    def statistics(self):
        """The stored `(mean, std)` as float64 NumPy arrays, `(n_features,)` each."""
        self._check_built("statistics")
        return (
            self.feature_mean.numpy().astype(np.float64),
            self.feature_std.numpy().astype(np.float64),
        )

    def adapt(self, data, steps=None):
        """Sets the statistics from one pass over `data`.

        See `feature_statistics` for the data accepted and the computation.
        The layer is built from the data's number of features if not yet;
        on any error nothing is changed.

        Args:
            data: Features (an array, tensor, pandas object or list), or a
                batched `tf.data.Dataset` or other iterable of batches
                yielding `x`, `(x, y)` or `(x, y, sample_weight)`.
            steps: Optional number of batches to draw from a dataset (needed
                for a repeating one). Defaults to the whole dataset.
        """
        self.set_statistics(*feature_statistics(data, steps=steps, center=self.center))

    def set_statistics(self, mean, std, rows):
        """Stores statistics computed by `feature_statistics`.

        Called on the host (cross-replica context under a strategy), so the
        values are written to every replica's copy.

        Args:
            mean: `(n_features,)` feature means.
            std: `(n_features,)` feature standard deviations, all > 0.
            rows: The number of rows they came from, > 0.

        Raises:
            ValueError: if the values are not finite, `std` or `rows` not
                positive, or the number of features differs from the layer's.
        """
        mean = np.asarray(mean, dtype=np.float64).reshape(-1)
        std = np.asarray(std, dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(mean)):
            raise ValueError(
                "Received an invalid value for `mean`, expected finite values. "
                f"Received: mean={mean}"
            )
        if not np.all(np.isfinite(std) & (std > 0)):
            raise ValueError(
                "Received an invalid value for `std`, expected finite values > 0. "
                f"Received: std={std}"
            )
        if isinstance(rows, bool) or int(rows) != rows or rows < 1:
            raise ValueError(
                "Received an invalid value for `rows`, expected a positive integer. "
                f"Received: rows={rows!r}"
            )
        if not self.built:
            self.build((None, len(mean)))
        if len(mean) != self.n_features or len(std) != self.n_features:
            raise ValueError(
                f"Received statistics of {len(mean)} features, but this layer "
                f"has n_features={self.n_features}."
            )
        self.feature_mean.assign(mean.astype(self.feature_mean.dtype))
        self.feature_std.assign(std.astype(self.feature_std.dtype))
        self.adapted_rows.assign(int(rows))

    def load_own_variables(self, store):
        if self._loaded_from_old_layout and not len(store.keys()):
            # The file predates this layer; `load_old_layout` already loaded it.
            self._loaded_from_old_layout = False
            return
        self._loaded_from_old_layout = False
        super().load_own_variables(store)

    def load_old_layout(self, feature_mean, feature_std, adapted_rows):
        """Loads the statistics of a `.keras` file written before this layer.

        Until this layer existed (main 2541842), a standardizing
        `LinearRegression` held `feature_mean`, `feature_std` and
        `adapted_rows` as its own variables 2 to 4, and the file has no entry
        for the layer. The model's `load_own_variables` passes them here; the
        layer's own, absent, entry is then skipped when Keras visits it.
        """
        self.load_own_variables({"0": feature_mean, "1": feature_std, "2": adapted_rows})
        self._loaded_from_old_layout = True

    def _check_built(self, what):
        if not self.built:
            raise ValueError(
                f"This Standardization layer has not been built yet, so `{what}` "
                "has nothing to return: call `adapt(data)` or `build(input_shape)` first."
            )


def feature_statistics(data, steps=None, center=True):
    """Per-feature `(mean, std, rows)` of `data`, in float64, in one pass.

    The pass accumulates, per feature, the row count, mean and sum of squared
    deviations with Chan et al.'s pairwise update (numerically stable, and the
    same up to rounding however the rows are batched), and the minimum and
    maximum. A feature is constant when they are equal; its `std` is then 1
    and its `mean` its value. Sample weights and targets are ignored: the
    statistics only choose coordinates, not the optimum.

    With `center=False` (for a model without an intercept) the statistics
    are those of scaling without centering: `mean = 0` and `std` the root mean
    square `sqrt(mean(x²)) = sqrt(mean² + variance)` from the same moments,
    which makes every diagonal entry of the no-intercept Hessian 2 (glmnet
    and scikit-learn's `StandardScaler(with_mean=False)` divide by the
    centred standard deviation instead; see `docs/no-intercept.md`); an
    all-zero feature gets `std = 1`.

    Args:
        data: Features, `(n,)` or `(n, n_features)`: a NumPy array, tensor,
            pandas object or list, reduced in chunks of rows; or a batched
            `tf.data.Dataset` or other iterable of batches, yielding `x` or
            `(x, y)` or `(x, y, sample_weight)`.
        steps: Optional number of batches to draw from a dataset. Defaults to
            the whole dataset.
        center: If False, `mean` is 0 and `std` the root mean square.

    Returns:
        `(mean, std, rows)`: two float64 arrays `(n_features,)` and an int.

    Raises:
        ValueError: if the data is empty, non-finite, of the wrong shape, not
            batched, a distributed dataset, or `steps` is not a positive int.
    """
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
    mean, std = moments.statistics() if center else moments.uncentered_statistics()
    return mean, std, moments.count


def adapt_before_fit(model, x, validation_split=0.0):
    """At `fit`: adapts `model` on the training rows of in-memory `x`, if needed.

    A no-op for `standardize=False` models and for models already adapted
    (by `adapt`, an earlier `fit`, or loading). The training rows are the
    first `inputs.split_point(n, validation_split)`, the rows Keras trains
    on. A `keras_linreg.data.dataset_from_files` dataset is read once for the
    statistics (one streaming pass, see `feature_statistics`), then trained on.
    `fit` on another dataset, generator or `PyDataset` cannot read it twice
    (once for the statistics, once for training) in general, so such a model
    must be adapted first.

    Raises:
        ValueError: for a standardizing, unadapted model and data that is not
            an in-memory array.
    """
    if not model.standardize or (model.built and model.standardization.is_adapted):
        return
    if inputs.is_file_dataset(x):  # finite and re-readable: one streaming pass first
        model.adapt(x)
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
    model.adapt(features[: inputs.split_point(len(features), validation_split)])


class _Moments:
    """Per-feature count, mean, sum of squared deviations, min and max."""

    def __init__(self):
        self.count = 0
        self.mean = self.m2 = self.min = self.max = None

    def update(self, x):
        n = len(x)
        if n == 0:
            return
        bad = inputs.first_invalid_value(x.reshape(-1), float32=False)
        if bad is not None:
            index, problem = bad
            row, column = divmod(int(index), x.shape[1])
            raise ValueError(
                "Received non-finite values in `x`: feature statistics need finite "
                f"data, but the value at row {self.count + row} (0-based, over all "
                f"batches so far), column {column} {problem}. "
                f"Received: x[{self.count + row}, {column}]={float(x[row, column])!r}"
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

    def uncentered_statistics(self):
        """`(0, rms)`: scaling without centering; an all-zero feature gets 1."""
        zero = (self.min == 0) & (self.max == 0)
        rms = np.sqrt(np.square(self.mean) + self.m2 / self.count)
        return np.zeros_like(self.mean), np.where(zero, 1.0, rms)




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
