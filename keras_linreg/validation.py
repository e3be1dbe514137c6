"""Checks on in-memory data given to `fit`, `evaluate` and `predict`.

`LinearRegression.fit/evaluate/predict` call these before Keras sees the data,
so bad data is refused with a `ValueError` that names the array, what was
expected and what was received, before any update (the weights are untouched):

- `x`, `y`, `sample_weight` (and `validation_data`) holding NaN or ±inf: the
  error names the array, how many entries are bad and the first one (row, and
  column for 2-D `x`).
- float64 values beyond the float32 range, which would turn into inf when cast
  to the model's float32.
- negative `sample_weight` (the weighted MSE would be unbounded below).
- non-numeric dtypes (strings, objects such as `None`, dates, complex).
- shapes: `x` must be `(n,)` or `(n, n_features)`, `y` and `sample_weight`
  `(n,)` or `(n, 1)` with the same `n`; no empty data; once the model is
  built, `x` must have its `n_features` columns.

Integer, boolean and float64 inputs are accepted and cast to the model's
float32 by the model itself. Lists are turned into NumPy arrays (Keras
refuses nested lists). Only in-memory arrays are checked: NumPy arrays,
lists, pandas `DataFrame`/`Series` and eager `tf.Tensor`s; `tf.data.Dataset`,
generators and `keras.utils.PyDataset` pass through unchecked (for them, the
divergence guard in `divergence.py` stops training at the first non-finite
loss).

Cost: one `min`/`max` pass over each float array (no temporary copies; NaN and
±inf propagate into them), and a full element-wise scan only to locate a bad
entry for the message.
"""

from __future__ import annotations

import inspect

import keras
import numpy as np
import tensorflow as tf

from keras_linreg import _keras_internals

_FLOAT32_MAX = float(np.finfo(np.float32).max)
_NUMERIC_KINDS = "biuf"  # bool, signed and unsigned integers, floats


def prepare_fit(model, x, y, args, kwargs):
    """Checks `fit`'s in-memory data; returns `(x, y, kwargs)` to pass on.

    `args`/`kwargs` are the rest of `fit`'s arguments; they come back as
    keyword arguments only. Lists become NumPy arrays; nothing else changes.
    """
    arguments = _bind(keras.Model.fit, model, x, y, args, kwargs)
    x, y = arguments.pop("x"), arguments.pop("y")
    x, y, weights = _check_data(
        model,
        x,
        y,
        arguments.get("sample_weight"),
        names=("x", "y", "sample_weight"),
        require_y=True,
    )
    if weights is not None:
        arguments["sample_weight"] = weights
    validation_data = arguments.get("validation_data")
    if isinstance(validation_data, (tuple, list)) and len(validation_data) in (2, 3):
        val_x, val_y, *val_weights = validation_data
        checked = _check_data(
            model,
            val_x,
            val_y,
            val_weights[0] if val_weights else None,
            names=tuple(f"validation_data[{i}]" for i in range(3)),
            require_y=True,
        )
        arguments["validation_data"] = checked[: len(validation_data)]
    return x, y, arguments


def prepare_evaluate(model, x, y, args, kwargs):
    """Checks `evaluate`'s in-memory data; returns `(x, y, kwargs)` to pass on."""
    arguments = _bind(keras.Model.evaluate, model, x, y, args, kwargs)
    x, y = arguments.pop("x"), arguments.pop("y")
    if _keras_internals.is_fit_validation_pass(arguments):
        # `fit`'s own validation pass: its data was checked when fit began.
        return x, y, arguments
    x, y, weights = _check_data(
        model,
        x,
        y,
        arguments.get("sample_weight"),
        names=("x", "y", "sample_weight"),
        require_y=_is_in_memory(x),
    )
    if weights is not None:
        arguments["sample_weight"] = weights
    return x, y, arguments


def prepare_predict(model, x, args, kwargs):
    """Checks `predict`'s in-memory `x`; returns `(x, kwargs)` to pass on."""
    arguments = _bind(keras.Model.predict, model, x, None, args, kwargs)
    x = arguments.pop("x")
    arguments.pop("y", None)
    x, _, _ = _check_data(
        model, x, None, None, names=("x", "y", "sample_weight"), require_y=False
    )
    return x, arguments


def _bind(method, model, x, y, args, kwargs):
    """`method`'s arguments by name, so positional ones are found too.

    `args` are the positional arguments after `x` (and `y`), in the order of
    `method`'s signature (e.g. `fit(x, y, batch_size, epochs, ...)`).
    """
    signature = inspect.signature(method)
    call = {"x": x, "y": y} if "y" in signature.parameters else {"x": x}
    bound = signature.bind(model, *call.values(), *args, **kwargs)
    arguments = dict(bound.arguments)
    arguments.pop("self", None)
    arguments.update(arguments.pop("kwargs", None) or {})
    return arguments


def _is_in_memory(value):
    return (
        isinstance(value, (np.ndarray, list, tf.Tensor, tf.Variable))
        or np.isscalar(value)
        or _is_pandas(value)
    )


def _is_pandas(value):
    return (type(value).__module__ or "").startswith("pandas") and hasattr(value, "to_numpy")


def _check_data(model, x, y, sample_weight, names, require_y):
    """Checks one `(x, y, sample_weight)` triple; returns it (lists as arrays)."""
    x_name, y_name, w_name = names
    if x is None or not _is_in_memory(x):
        return x, y, sample_weight  # a dataset/generator, or nothing: not checked here
    x_array = _to_array(x, x_name, model)
    if x_array.ndim == 0 or x_array.ndim > 2:
        raise ValueError(
            f"Received an invalid `{x_name}`, expected shape `(n,)` (one feature) or "
            f"`(n, n_features)`. Received: {x_name}.shape={x_array.shape}"
        )
    n = x_array.shape[0]
    if n == 0:
        raise ValueError(
            f"Received an empty `{x_name}` (0 rows), expected at least one row. "
            f"Received: {x_name}.shape={x_array.shape}"
        )
    n_features = 1 if x_array.ndim == 1 else x_array.shape[1]
    if n_features == 0:
        raise ValueError(
            f"Received an invalid `{x_name}` with no columns, expected at least one "
            f"feature. Received: {x_name}.shape={x_array.shape}"
        )
    expected = getattr(model, "n_features", None) if model.built else None
    if expected is not None and n_features != expected:
        received = "(n,)" if x_array.ndim == 1 else f"(n, {n_features})"
        raise ValueError(
            f"Received an invalid `{x_name}`: this model has n_features={expected}, "
            f"so it expected shape (n, {expected}), but received {received}. "
            f"Received: {x_name}.shape={x_array.shape}"
        )
    _check_finite(x_array, x_name, _column_names(x, model))
    if isinstance(x, list):
        x = x_array

    if y is not None:
        y_array = _to_array(y, y_name, model)
        _check_vector(y_array, y_name, n, x_name)
        _check_finite(y_array, y_name)
        if isinstance(y, list):
            y = y_array
    elif require_y:
        raise ValueError(
            f"Received `{x_name}` as an array but no `{y_name}`: expected `{y_name}` "
            f"of shape ({n},), the targets."
        )

    if sample_weight is not None:
        w_array = _to_array(sample_weight, w_name, model)
        _check_vector(w_array, w_name, n, x_name)
        _check_finite(w_array, w_name)
        if w_array.dtype.kind in "if" and w_array.size and w_array.min() < 0:
            row = int(np.flatnonzero(w_array.reshape(-1) < 0)[0])
            raise ValueError(
                f"Received an invalid `{w_name}`, expected non-negative weights: a "
                "negative weight makes the weighted mean squared error unbounded "
                f"below. First negative value at row {row}: "
                f"{w_name}[{row}]={float(w_array.reshape(-1)[row])!r}"
            )
        if isinstance(sample_weight, list):
            sample_weight = w_array
    return x, y, sample_weight


def _to_array(value, name, model):
    """A NumPy view of `value` (no copy for NumPy arrays), numeric dtype checked."""
    if _is_pandas(value):
        _check_pandas_dtypes(value, name)
        array = value.to_numpy()
    else:
        try:
            array = np.asarray(value)
        except (ValueError, TypeError) as error:
            raise ValueError(
                f"Received an invalid `{name}`, expected a rectangular numeric array "
                f"(rows of equal length). Received: {type(value).__name__} that NumPy "
                f"cannot convert ({error})"
            ) from None
    if array.dtype.kind not in _NUMERIC_KINDS:
        raise ValueError(_non_numeric_message(array, name))
    return array


def _check_pandas_dtypes(frame, name):
    columns = frame.dtypes.items() if hasattr(frame, "columns") else [(frame.name, frame.dtype)]
    for column, dtype in columns:
        kind = getattr(dtype, "kind", "O")
        if kind not in _NUMERIC_KINDS:
            raise ValueError(
                f"Received an invalid `{name}`, expected numeric columns (integers, "
                f"floats or booleans), but column {column!r} has dtype {dtype}. "
                f"Convert or drop it first. Received: {name}.dtypes[{column!r}]={dtype}"
            )


def _non_numeric_message(array, name):
    where = ""
    if array.dtype.kind == "O" and array.size:
        flat = array.reshape(-1)
        for index, item in enumerate(flat):
            if isinstance(item, bool) or not isinstance(item, (int, float, np.number)):
                position = np.unravel_index(index, array.shape)
                where = (
                    f" The first non-numeric entry is {name}"
                    f"[{', '.join(str(int(i)) for i in position)}]={item!r}."
                )
                break
    return (
        f"Received an invalid `{name}`, expected numeric values (integers, floats or "
        f"booleans), received dtype {array.dtype}.{where} Received: "
        f"{name}.dtype={array.dtype}"
    )


def _check_vector(array, name, n, x_name):
    if not (array.ndim == 1 or (array.ndim == 2 and array.shape[1] == 1)):
        raise ValueError(
            f"Received an invalid `{name}`, expected shape `(n,)` or `(n, 1)` with n={n} "
            f"(the rows of `{x_name}`). Received: {name}.shape={array.shape}"
        )
    if array.shape[0] != n:
        raise ValueError(
            f"Received `{name}` with {array.shape[0]} rows, but `{x_name}` has {n}: "
            f"expected {name}.shape=({n},). Received: {name}.shape={array.shape}"
        )


def _column_names(x, model):
    if hasattr(x, "columns"):
        return [str(c) for c in x.columns]
    names = getattr(model, "feature_names", None)
    return list(names) if names else None


def _check_finite(array, name, column_names=None):
    """Raises if `array` holds NaN/±inf, or float64 values beyond float32."""
    if array.dtype.kind != "f" or array.size == 0:
        return  # integers and booleans are always finite
    low, high = array.min(), array.max()  # NaN and ±inf propagate into these
    if np.isfinite(low) and np.isfinite(high):
        if array.dtype.itemsize > 4 and max(-low, high) > _FLOAT32_MAX:
            bad = np.abs(array) > _FLOAT32_MAX
            raise ValueError(
                f"Received an invalid `{name}`: {int(bad.sum())} values exceed the "
                f"float32 range (|v| > {_FLOAT32_MAX:.3g}) and would become inf when "
                f"cast to the model's float32; the first is "
                f"{_locate(array, bad, name, column_names)}. Rescale the data."
            )
        return
    bad = ~np.isfinite(array)
    raise ValueError(
        f"Received non-finite values in `{name}`: {int(bad.sum())} "
        f"{'entry is' if bad.sum() == 1 else 'entries are'} NaN or ±inf, the first is "
        f"{_locate(array, bad, name, column_names)}. Drop or impute them; nothing was "
        "trained (the weights are unchanged)."
    )


def _locate(array, bad, name, column_names):
    """'row 7, column 1 ('rooms'): x[7, 1]=nan' for the first bad entry."""
    if array.ndim == 1 or (array.ndim == 2 and array.shape[1] == 1 and column_names is None):
        row = int(np.flatnonzero(bad.reshape(len(array), -1).any(axis=1))[0])
        value = float(array.reshape(len(array), -1)[row, 0])
        return f"at row {row}: {name}[{row}]={value!r}"
    row = int(np.flatnonzero(bad.any(axis=1))[0])
    column = int(np.flatnonzero(bad[row])[0])
    label = ""
    if column_names is not None and column < len(column_names):
        label = f" ({column_names[column]!r})"
    return (
        f"at row {row}, column {column}{label}: "
        f"{name}[{row}, {column}]={float(array[row, column])!r}"
    )
