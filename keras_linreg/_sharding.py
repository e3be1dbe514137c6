"""Files sharded over `tf.distribute` workers, and exact least squares over the shards.

Each worker of a cluster reads only its own units of the files (a whole CSV file
or one Parquet row group); `sharded_least_squares` has every worker reduce its
shard to a float64 R factor and gathers the factors with the strategy's
all-reduce, so the solution is the one-process answer. User guide: docs/data.md,
"Scaling out over files"; design: docs/design/sharding.md.
"""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import tensorflow as tf

from keras_linreg.closed_form import least_squares

__all__ = ["distributed_dataset_from_files", "input_shard", "sharded_least_squares"]

# Marks a `distributed_dataset_from_files` dataset (`data.raising_file_errors`
# then silences Keras' "ran out of data" warning at the end of each pass).
SHARDED_FILES = "_keras_linreg_sharded_files"
# Where it keeps one replica's batch spec (`LinearRegression` builds from it
# under a strategy instead of reading a first batch, see model.py).
BATCH_SPEC = "_keras_linreg_batch_spec"


# ------------------------------------------------------------------- the units
def check_shard(shard):
    """`shard` as `(index, count)` ints, or None; refuses anything else."""
    if shard is None:
        return None
    valid = (
        isinstance(shard, (tuple, list))
        and len(shard) == 2
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in shard)
        and shard[1] >= 1
        and 0 <= shard[0] < shard[1]
    )
    if not valid:
        raise ValueError(
            "Received an invalid value for `shard`, expected None or a pair "
            "`(index, count)` of integers with 0 <= index < count. "
            f"Received: shard={shard!r}"
        )
    return int(shard[0]), int(shard[1])


def shard_units(files, parquet, shard):
    """The part of `files` that belongs to `shard`.

    The files are cut into units, in order: a CSV file is one unit, a Parquet
    file one unit per row group. Unit `j` belongs to shard `j % count`.

    Args:
        files: The file paths, in order.
        parquet: Per file, whether it is a Parquet file.
        shard: `(index, count)`.

    Returns:
        `[(file position, row groups or None), ...]`: the files holding a unit
        of the shard, in order, with the Parquet row groups to read (None for
        a CSV file, which is read whole).
    """
    index, count = shard
    units, j = [], 0
    for position, (path, is_parquet) in enumerate(zip(files, parquet, strict=True)):
        if is_parquet:
            groups = []
            for group in range(pq.ParquetFile(path).num_row_groups):
                if j % count == index:
                    groups.append(group)
                j += 1
            if groups:
                units.append((position, groups))
        else:
            if j % count == index:
                units.append((position, None))
            j += 1
    return units


def input_shard(strategy=None):
    """`(index, count)` of this process's input pipeline under `strategy`.

    The `tf.distribute.InputContext` the strategy hands to
    `distribute_datasets_from_function`: `(input_pipeline_id,
    num_input_pipelines)`, one pipeline per worker process
    (`MultiWorkerMirroredStrategy`), one for all devices of a process
    (`MirroredStrategy`, and no strategy: `(0, 1)`).

    Args:
        strategy: A `tf.distribute.Strategy`, default the current one
            (`tf.distribute.get_strategy()`).

    Returns:
        `(index, count)`, to pass as `dataset_from_files(..., shard=...)`.
    """
    strategy = strategy or tf.distribute.get_strategy()
    contexts = []

    def capture(context):
        contexts.append(context)
        return tf.data.Dataset.range(1)

    strategy.distribute_datasets_from_function(capture)
    context = contexts[0]
    return int(context.input_pipeline_id), int(context.num_input_pipelines)


def distributed_dataset_from_files(paths, *, strategy=None, batch_size=65536, **kwargs):
    """`dataset_from_files` sharded over a strategy's workers, for `fit`.

    Each worker reads only its shard of the files (`shard=input_shard(strategy)`)
    in per-replica batches of `batch_size // num_replicas_in_sync` rows, and the
    strategy feeds each replica its own batches
    (`strategy.distribute_datasets_from_function`). A training step takes the
    next per-replica batch of every replica, so its global batch has at most
    `batch_size` rows; `LinearRegression` minimises that global batch's loss
    exactly, however unevenly the rows fall (a short or empty last batch on
    some worker). With one input pipeline (`MirroredStrategy`, no strategy)
    the global batches are those of `dataset_from_files(paths,
    batch_size=batch_size)` in file order; with several workers a global
    batch is the union of each worker's next batch of its own shard. With
    `batch_size` at least the rows of the largest shard times the replicas,
    every epoch is one full-batch step over all rows, the one-process step.

    ```python
    strategy = tf.distribute.MultiWorkerMirroredStrategy()   # reads TF_CONFIG
    with strategy.scope():
        model = keras_linreg.LinearRegression(n_features=4)
        model.compile()
    data = keras_linreg.data.distributed_dataset_from_files(
        "/shared/data/*.parquet", target="price", strategy=strategy, batch_size=4096)
    model.fit(data, epochs=5)
    ```

    Args:
        paths: As `dataset_from_files`: a path, a glob or a list of them, the
            same on every worker (shared storage).
        strategy: A `tf.distribute.Strategy`, default the current one.
        batch_size: The global batch, a positive multiple of the strategy's
            `num_replicas_in_sync`. Defaults to 65536.
        **kwargs: `dataset_from_files`' other arguments (`target`,
            `features`, `sample_weight`, `shuffle`, `seed`, ...), not `shard`.

    Returns:
        A `tf.distribute.DistributedDatasetsFromFunction`, to pass to `fit`,
        `evaluate` or as `validation_data=`. The model must be built
        (`n_features=` or `adapt`) before `fit` on it.
    """
    from keras_linreg import data  # data imports this module

    if "shard" in kwargs:
        raise ValueError(
            "Received `shard` for `distributed_dataset_from_files`, expected none: each "
            f"worker's shard comes from the strategy. Received: shard={kwargs['shard']!r}"
        )
    strategy = strategy or tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    if (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
            or batch_size < 1 or batch_size % replicas):
        raise ValueError(
            "Received an invalid value for `batch_size`, expected a positive multiple of "
            f"the strategy's {replicas} replicas (the global batch). "
            f"Received: batch_size={batch_size!r}"
        )

    specs = []

    def dataset_fn(context):
        dataset = data.dataset_from_files(
            paths,
            batch_size=context.get_per_replica_batch_size(int(batch_size)),
            shard=(context.input_pipeline_id, context.num_input_pipelines),
            **kwargs,
        )
        specs.append(dataset.element_spec)
        return dataset

    distributed = strategy.distribute_datasets_from_function(dataset_fn)
    setattr(distributed, SHARDED_FILES, True)
    setattr(distributed, BATCH_SPEC, specs[0])
    return distributed


# --------------------------------------------------------------- least squares
def sharded_least_squares(
    paths,
    *,
    target,
    features=None,
    sample_weight=None,
    fit_intercept=True,
    l2=0.0,
    strategy=None,
    batch_size=65536,
    delimiter=",",
    decimal_point=".",
    encoding="utf8",
    drop_missing=False,
):
    """`least_squares` over files sharded between the workers of a strategy.

    Every worker reads only its shard (`dataset_from_files(...,
    shard=input_shard(strategy))`) once, in float64, reducing it to the R
    factor of its rows of the whitened, shifted design and target

    ```
    [A_k | b_k] = sqrt(w) · [1, x − s_k, y − t_k]      (the 1 only with an intercept)
    ```

    (`s_k`, `t_k`: the weighted means of the shard's first batch), an
    O(n_features²) summary with `R_kᵀ R_k = [A_k | b_k]ᵀ [A_k | b_k]`. One
    all-reduce of the strategy gathers all workers' factors, shifts, row counts
    and weight sums. Moving a factor to the common shift `(s, t)` (the shards'
    weight-averaged shifts) is exact algebra on its first row,
    `R_k[0, j] += (s_kj − s_j) R_k[0, 0]`, since the ones column only enters
    row 0. Stacking the moved factors and factoring again,
    `R = qr([R_1; …; R_K])`, gives the R factor of all rows: the problem
    `min ‖A u − b‖² + n·l2‖slope‖²` is then solved from `R` by
    `keras_linreg.least_squares` (Householder QR, refined), and
    `intercept = u_0 + t − s · slope`. This is the one-process answer of
    `least_squares(dataset_from_files(paths, ...))` with the rows in another
    order: equal to about 1e-12 relative on well-conditioned data (measured in
    tests/test_sharding.py, asserted to 1e-9). Every worker returns the same
    answer.

    Without a strategy (or with one input pipeline) the one process reads all
    files. Rank deficiency is decided from the merged factor (its rows stand
    for the data's), so a numerically dependent column gets slope 0 as in
    `least_squares`, with a tolerance of `(n_features + 2)·eps` rather than
    `max(n, n_features)·eps`.

    Args:
        paths: A path, a glob or a list of them, the same on every worker.
        target: Name of the target column.
        features: Optional feature column names (default: the numeric
            columns, as in `dataset_from_files`).
        sample_weight: Optional name of a column of non-negative row weights.
        fit_intercept: If False, the fit goes through the origin.
        l2: The L2 (ridge) coefficient, a finite number ≥ 0, as in
            `least_squares` (penalty `n·l2·‖slope‖²` with `n` all rows).
        strategy: A `tf.distribute.Strategy`, default the current one. Every
            worker of the cluster must call this function (it all-reduces).
        batch_size: Rows read at a time. Defaults to 65536.
        delimiter, decimal_point, encoding, drop_missing: As in
            `dataset_from_files`.

    Returns:
        `(slope, intercept)`: a float64 array of shape `(n_features,)` and a
        float, the same on every worker.

    Raises:
        ValueError: for bad arguments or files, as `dataset_from_files`
            (`DataFileError` for bad data, naming file, row and column).
    """
    from keras_linreg import data  # data imports this module

    if target is None:
        raise ValueError(
            "Received an invalid value for `target`, expected the name of the target "
            "column. Received: target=None"
        )
    if not (np.isfinite(l2) and l2 >= 0):
        raise ValueError(
            "Received an invalid value for `l2`, expected a finite number >= 0. "
            f"Received: l2={l2!r}"
        )
    strategy = strategy or tf.distribute.get_strategy()
    index, count = input_shard(strategy)
    dataset = data.dataset_from_files(
        paths, target=target, features=features, sample_weight=sample_weight,
        batch_size=batch_size, delimiter=delimiter, decimal_point=decimal_point,
        encoding=encoding, drop_missing=drop_missing,
        shard=(index, count) if count > 1 else None,
    )
    k = int(dataset.element_spec[0].shape[1])
    with data.raising_file_errors():
        part = _shard_factor(dataset.as_numpy_iterator(), k, bool(fit_intercept))
    parts = _gather(strategy, part, index, count)
    return _solve_merged(parts, k, bool(fit_intercept), float(l2))


def _shard_factor(batches, k, fit_intercept):
    """One pass over `(x, y[, w])` batches: a flat float64 vector
    `[R (p+1)², s (k), t, n, Σw]` (R zero-padded; `s`, `t` 0 without an intercept)."""
    p = k + int(fit_intercept)
    factor = np.zeros((0, p + 1))
    shift_x, shift_y = np.zeros(k), 0.0
    n, weight_sum, first = 0, 0.0, True
    for batch in batches:
        x, y = batch[0].astype(np.float64), batch[1].astype(np.float64)
        weights = np.ones(len(x)) if len(batch) < 3 else batch[2].astype(np.float64)
        if first and fit_intercept:  # only close to the centre: the ones column does the rest
            total = weights.sum()
            if total > 0:
                shift_x, shift_y = weights @ x / total, float(weights @ y) / total
            else:
                shift_x, shift_y = x.mean(axis=0), float(y.mean())
        first = False
        root = np.sqrt(weights)
        design = root[:, None] * (x - shift_x)
        if fit_intercept:
            design = np.hstack([root[:, None], design])
        rows = np.hstack([design, (root * (y - shift_y))[:, None]])
        factor = np.linalg.qr(np.vstack([factor, rows]), mode="r")
        n += len(x)
        weight_sum += float(weights.sum())
    square = np.zeros((p + 1, p + 1))
    square[: factor.shape[0]] = factor
    return np.concatenate([square.ravel(), shift_x, [shift_y, n, weight_sum]])


def _gather(strategy, part, index, count):
    """Every input pipeline's `part`, stacked `(count, len(part))`, on every worker.

    Each pipeline writes its part in its own row of a zero matrix and one
    all-reduce (SUM) of the strategy adds the matrices: exact, since every entry
    is one part's value plus zeros. Only the first replica of each worker
    contributes (a worker's replicas are consecutive in the sync group).
    """
    slots = np.zeros((count, len(part)))
    slots[index] = part
    if count == 1:
        return slots
    local = strategy.num_replicas_in_sync // count
    value = tf.constant(slots, dtype=tf.float64)
    zeros = tf.zeros_like(value)
    distributed = strategy.experimental_distribute_values_from_function(
        lambda context: value if context.replica_id_in_sync_group % local == 0 else zeros
    )
    return strategy.reduce(tf.distribute.ReduceOp.SUM, distributed, axis=None).numpy()


def _merge(parts, k, fit_intercept):
    """`(R, s, t, n, Σw)`: the R factor of all shards' rows at one common shift."""
    p = k + int(fit_intercept)
    size = (p + 1) ** 2
    factors = [row[:size].reshape(p + 1, p + 1) for row in parts]
    shifts_x = [row[size : size + k] for row in parts]
    shifts_y, ns, weight_sums = (parts[:, size + k + i] for i in range(3))
    n, weight_sum = int(round(ns.sum())), float(weight_sums.sum())
    shift_x, shift_y = np.zeros(k), 0.0
    if fit_intercept:
        nonempty = ns > 0
        mix = weight_sums if weight_sum > 0 else nonempty.astype(np.float64)
        mix = mix / mix.sum()
        shift_x = sum(m * s for m, s in zip(mix, shifts_x, strict=True))
        shift_y = float(mix @ shifts_y)
        moved = []
        for factor, s, t in zip(factors, shifts_x, shifts_y, strict=True):
            factor = factor.copy()
            # [1, x − s, y − t] = [1, x − s_k, y − t_k] + (s_k − s, t_k − t) in row 0.
            factor[0, 1:p] += (s - shift_x) * factor[0, 0]
            factor[0, p] += (t - shift_y) * factor[0, 0]
            moved.append(factor)
        factors = moved
    merged = np.linalg.qr(np.vstack(factors), mode="r")
    return merged, shift_x, shift_y, n, weight_sum


def _solve_merged(parts, k, fit_intercept, l2):
    merged, shift_x, shift_y, n, weight_sum = _merge(parts, k, fit_intercept)
    if weight_sum == 0:  # as least_squares: nothing to fit
        return np.zeros(k), 0.0
    p = k + int(fit_intercept)
    design, target = merged[:, :p], merged[:, p]
    if l2:
        penalty = np.zeros((k, p))
        penalty[:, p - k :] = np.sqrt(n * l2) * np.eye(k)
        design, target = np.vstack([design, penalty]), np.concatenate([target, np.zeros(k)])
    # The merged rows stand for the data's: their least squares is the data's.
    u, _ = least_squares(design, target, fit_intercept=False)
    if not fit_intercept:
        return u, 0.0
    slope = u[1:]
    return slope, float(u[0] + shift_y - shift_x @ slope)
