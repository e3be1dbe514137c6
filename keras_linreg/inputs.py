"""In-memory inputs: recognising, converting and checking them, and the train/validation cut.

Also the batched iterables (`(x, y[, sample_weight])` tuples) that the float64
references (`least_squares`, `ols`) read in one pass, checked batch by batch.

`fit`, `evaluate`, `predict`, the fast path, standardization and the closed-form
references all go through this module, so each rule about data is written once and
bad data is refused before anything is trained. Design notes: docs/design/inputs.md.
"""

from __future__ import annotations

import collections.abc
import inspect
import math
import types

import keras
import numpy as np
import tensorflow as tf

from keras_linreg import _keras_internals

__all__ = [
    "batches",
    "build_from_data",
    "check_arrays",
    "column_names",
    "check_evaluate_arguments",
    "check_fit_arguments",
    "check_predict_arguments",
    "first_invalid_value",
    "is_batched",
    "is_file_dataset",
    "is_in_memory",
    "orders_itself",
    "reiterable",
    "sliceable",
    "split_point",
    "split_rows",
    "to_numpy",
]

_FLOAT32_MAX = float(np.finfo(np.float32).max)
_NUMERIC_KINDS = "biuf"  # bool, signed and unsigned integers, floats
_NAMES = ("x", "y", "sample_weight")
_UNCHANGED = "Drop or impute them; nothing was trained (the weights are unchanged)."

# Keras' signatures, read once at import (positional arguments are bound by them).
_FIT_SIGNATURE = inspect.signature(keras.Model.fit)
_EVALUATE_SIGNATURE = inspect.signature(keras.Model.evaluate)
_PREDICT_SIGNATURE = inspect.signature(keras.Model.predict)


# ------------------------------------------------------------------ recognising
def is_in_memory(value) -> bool:
    """Whether `value` is in-memory data, which this package checks and slices itself.

    In memory: NumPy arrays and scalars, lists and tuples (of rows), pandas objects,
    `tf.Tensor`s, `tf.Variable`s and `keras.Variable`s, and other array-likes NumPy can
    read (`__array__`). Not: None, `tf.data.Dataset`s, `keras.utils.PyDataset`s,
    generators, dicts, sparse or ragged tensors; those go to Keras' own data adapters.
    """
    if value is None or isinstance(value, (tf.data.Dataset, keras.utils.PyDataset, dict)):
        return False
    return (
        isinstance(value, (np.ndarray, list, tuple, tf.Tensor, tf.Variable))
        or np.isscalar(value)
        or hasattr(value, "__array__")
    )


def is_file_dataset(value) -> bool:
    """Whether `value` is a `keras_linreg.data.dataset_from_files` dataset.

    Such a dataset is finite and can be read more than once (a new pass over the
    files each time), and knows its features' names.
    """
    return isinstance(value, tf.data.Dataset) and _file_features(value) is not None


def _file_features(dataset):
    return getattr(dataset, FILE_FEATURES_ATTRIBUTE, None)


# Where `dataset_from_files` records the feature names on its dataset.
FILE_FEATURES_ATTRIBUTE = "_keras_linreg_feature_names"
# Where it keeps its reader: called, a generator of one pass's NumPy batches.
FILE_READER_ATTRIBUTE = "_keras_linreg_files"


def orders_itself(x) -> bool:
    """Inputs for which Keras ignores `shuffle` (and warns if it is True)."""
    if isinstance(x, (tf.data.Dataset, tf.distribute.DistributedDataset, types.GeneratorType)):
        return True
    if isinstance(x, keras.utils.PyDataset):
        return getattr(x, "num_batches", None) is None
    return type(x).__module__.startswith(("torch.utils.data", "grain"))


def _is_pandas(value):
    return (type(value).__module__ or "").startswith("pandas") and hasattr(value, "to_numpy")


# ------------------------------------------------------------------- converting
def to_numpy(value) -> np.ndarray:
    """A NumPy array of in-memory `value` (no copy for NumPy arrays and CPU tensors)."""
    if _is_pandas(value):
        return value.to_numpy()
    return np.asarray(value)


def sliceable(value):
    """`value` as an array the fast path slices itself, None for None, or `NotImplemented`.

    NumPy arrays and eager numeric `tf.Tensor`s are kept as they are; pandas objects,
    lists, variables and other array-likes become NumPy arrays or tensors. Anything
    else (non-numeric, symbolic, not in memory) is `NotImplemented`: Keras' `fit` takes it.
    """
    if value is None:
        return None
    if not is_in_memory(value):
        return NotImplemented
    if isinstance(value, (tf.Variable, keras.Variable)):
        value = tf.convert_to_tensor(value)
    if isinstance(value, tf.Tensor):
        if not hasattr(value, "numpy") or not (value.dtype.is_floating or value.dtype.is_integer):
            return NotImplemented  # symbolic, or not numeric
        return value
    try:
        array = to_numpy(value)
    except (ValueError, TypeError):
        return NotImplemented
    return array if array.dtype.kind in _NUMERIC_KINDS else NotImplemented


# ---------------------------------------------------------------------- cutting
def split_point(n: int, validation_split: float) -> int:
    """The number of training rows Keras keeps for `validation_split`.

    Keras' `fit` trains on the first `floor(n · (1 - validation_split))` rows
    and validates on the rest (taken before any shuffling). Everything that
    reports on "the training rows" must cut at the same place.

    Args:
        n: Number of rows.
        validation_split: The fraction in `[0, 1)` held out for validation.

    Returns:
        The index of the first validation row (`n` when `validation_split` is 0).
    """
    if not validation_split:
        return n
    return int(math.floor(n * (1.0 - validation_split)))


def split_rows(arrays, validation_split):
    """Keras' `validation_split` of `(x, y, sample_weight)`: `(train, validation)`.

    The first `split_point(n, validation_split)` rows train, the rest validate;
    entries that are None stay None. Raises Keras' own error when either part
    would be empty.
    """
    n = int(arrays[0].shape[0])
    split_at = split_point(n, validation_split)
    if split_at == 0 or split_at == n:
        raise ValueError(
            f"Training data contains {n} samples, which is not sufficient to split it "
            "into a validation and training set as specified by "
            f"`validation_split={validation_split}`. Either provide more data, or a "
            "different value for the `validation_split` argument."
        )
    train = tuple(None if a is None else a[:split_at] for a in arrays)
    validation = tuple(None if a is None else a[split_at:] for a in arrays)
    return train, validation


# --------------------------------------------------------- the model's methods
def check_fit_arguments(model, x, y, args, kwargs):
    """Checks `fit`'s in-memory data and arguments; returns `(x, y, kwargs)` to pass on.

    `args`/`kwargs` are the rest of `fit`'s arguments; they come back as keyword
    arguments only. Lists become NumPy arrays; a `shuffle` left at its default is
    set to False for inputs that order themselves (Keras would warn about True);
    `class_weight` is refused (a regression target has no classes).
    """
    arguments = _bind(_FIT_SIGNATURE, model, x, y, args, kwargs)
    x, y = arguments.pop("x"), arguments.pop("y")
    _record_column_names(model, x)
    _check_file_features(model, x, "x")
    _check_file_features(model, arguments.get("validation_data"), "validation_data")
    x, y, weights = _check_for_model(
        model, x, y, arguments.get("sample_weight"), _NAMES, require_y=True
    )
    if weights is not None:
        arguments["sample_weight"] = weights
    validation_data = arguments.get("validation_data")
    if isinstance(validation_data, (tuple, list)) and len(validation_data) in (2, 3):
        val_x, val_y, *val_weights = validation_data
        checked = _check_for_model(
            model,
            val_x,
            val_y,
            val_weights[0] if val_weights else None,
            tuple(f"validation_data[{i}]" for i in range(3)),
            require_y=True,
        )
        arguments["validation_data"] = checked[: len(validation_data)]
    if arguments.get("class_weight") is not None:
        raise ValueError(
            "Received an invalid value for `class_weight`: LinearRegression is a "
            "regression model, its targets are real numbers and have no classes to "
            "weight. Weight rows with `sample_weight=` instead. "
            f"Received: class_weight={arguments['class_weight']!r}"
        )
    arguments.pop("class_weight", None)
    if "shuffle" not in arguments:
        arguments["shuffle"] = not orders_itself(x)
    return x, y, arguments


def check_evaluate_arguments(model, x, y, args, kwargs):
    """Checks `evaluate`'s in-memory data; returns `(x, y, kwargs)` to pass on."""
    arguments = _bind(_EVALUATE_SIGNATURE, model, x, y, args, kwargs)
    x, y = arguments.pop("x"), arguments.pop("y")
    if _keras_internals.is_fit_validation_pass(arguments):
        # `fit`'s own validation pass: its data was checked when fit began.
        return x, y, arguments
    _check_file_features(model, x, "x")
    x, y, weights = _check_for_model(
        model, x, y, arguments.get("sample_weight"), _NAMES, require_y=is_in_memory(x)
    )
    if weights is not None:
        arguments["sample_weight"] = weights
    return x, y, arguments


def check_predict_arguments(model, x, args, kwargs):
    """Checks `predict`'s in-memory `x`; returns `(x, kwargs)` to pass on."""
    arguments = _bind(_PREDICT_SIGNATURE, model, x, None, args, kwargs)
    x = arguments.pop("x")
    arguments.pop("y", None)
    _check_file_features(model, x, "x")
    x, _, _ = _check_for_model(model, x, None, None, _NAMES, require_y=False)
    return x, arguments


def build_from_data(model, x):
    """Builds an unbuilt `model` from the shape of `x` (in memory, or a `tf.data.Dataset`).

    What the first training step would do anyway, done before training so that
    callbacks (the divergence monitor, `BackupAndRestore`) find a built model.
    Other inputs (generators, PyDatasets) build at the first step.
    """
    if model.built or x is None:
        return
    if is_in_memory(x):
        shape = np.shape(x)
    elif isinstance(x, tf.data.Dataset):
        spec = x.element_spec
        spec = spec[0] if isinstance(spec, tuple) else spec
        shape = tuple(getattr(spec, "shape", ()))
    else:
        return
    if len(shape) == 1:
        input_shape = (None,)
    elif len(shape) == 2 and shape[1] is not None:
        input_shape = (None, shape[1])
    else:
        return
    with model.distribute_strategy.scope():
        model.build(input_shape)


def _bind(signature, model, x, y, args, kwargs):
    """The method's arguments by name, so positional ones are found too.

    `args` are the positional arguments after `x` (and `y`), in the order of
    the signature (e.g. `fit(x, y, batch_size, epochs, ...)`).
    """
    call = {"x": x, "y": y} if "y" in signature.parameters else {"x": x}
    bound = signature.bind(model, *call.values(), *args, **kwargs)
    arguments = dict(bound.arguments)
    arguments.pop("self", None)
    arguments.update(arguments.pop("kwargs", None) or {})
    return arguments


def _check_for_model(model, x, y, sample_weight, names, require_y):
    """`_check` with what the model knows: its feature count (once built) and names."""
    if x is None or not is_in_memory(x):
        return x, y, sample_weight  # a dataset/generator, or nothing: not checked here
    n_features = getattr(model, "n_features", None) if model.built else None
    column_names = None
    if hasattr(x, "columns"):
        x = _select_columns(model, x, names[0])
        column_names = [str(c) for c in x.columns]
    elif getattr(model, "feature_names", None):
        column_names = list(model.feature_names)
    x_array, y_array, w_array = _check(
        x,
        y,
        sample_weight,
        names=names,
        require_y=require_y,
        n_features=n_features,
        column_names=column_names,
        float32=True,
        advice=_UNCHANGED,
    )
    # Lists become arrays (Keras refuses nested lists); everything else passes as given.
    return tuple(
        array if isinstance(value, (list, tuple)) else value
        for value, array in ((x, x_array), (y, y_array), (sample_weight, w_array))
    )


def _record_column_names(model, x):
    """`fit` on a DataFrame names the features, unless the model already has names.

    Only when the column count fits the model (built or not); a mismatch is left to
    the shape check, which names both counts.
    """
    if getattr(model, "feature_names", None):
        return
    if is_file_dataset(x):
        names = tuple(_file_features(x))
    elif hasattr(x, "columns") and _is_pandas(x):
        names = tuple(str(column) for column in x.columns)
    else:
        return
    if len(set(names)) != len(names):
        return  # duplicate labels cannot select columns by name
    if model.built and getattr(model, "n_features", None) != len(names):
        return
    model.feature_names = names


def _check_file_features(model, dataset, name):
    """A `dataset_from_files` dataset must read the model's features, in its order."""
    names = getattr(model, "feature_names", None)
    if not names or not is_file_dataset(dataset):
        return
    features = tuple(_file_features(dataset))
    if features != tuple(names):
        raise ValueError(
            f"Received `{name}` read from files with features={features!r}, but the "
            f"model's features are feature_names={tuple(names)!r}, in this order. Pass "
            "`features=model.feature_names` to `dataset_from_files`."
        )


def _select_columns(model, frame, name):
    """A DataFrame's columns in the order of `model.feature_names`, chosen by name.

    Columns may come in any order and extra ones are ignored, as a model that
    knows its features' names should; a missing name is an error naming it.
    Without `feature_names` the columns are taken as they are (positionally).
    """
    names = getattr(model, "feature_names", None)
    if not names or not _is_pandas(frame):
        return frame
    labels = {str(column): column for column in frame.columns}
    missing = [feature for feature in names if feature not in labels]
    if missing:
        raise ValueError(
            f"Received an invalid `{name}`: the model's features are "
            f"feature_names={tuple(names)!r}, selected from a DataFrame by name, but "
            f"column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} "
            f"{'are' if len(missing) > 1 else 'is'} missing. "
            f"Received: {name}.columns={list(labels)!r}"
        )
    if list(labels) == list(names):
        return frame
    return frame[[labels[feature] for feature in names]]


# --------------------------------------------------------------------- checking
def check_arrays(x, y=None, sample_weight=None, *, require_y=True):
    """Checks `(x, y, sample_weight)` for a float64 computation; returns NumPy arrays.

    The rules of `fit` (numeric values, `x` of shape `(n,)` or `(n, k)`, `y` and
    `sample_weight` of `n` rows, no NaN or ±inf, non-negative weights), without the
    float32 range check: the closed-form references compute in float64.

    Returns:
        `(x, y, sample_weight)`: `x` of shape `(n, k)`, `y` and `sample_weight` of
        shape `(n,)` or None, in their own dtypes (views, no copies where possible).
    """
    x, y, sample_weight = _check(
        x,
        y,
        sample_weight,
        names=_NAMES,
        require_y=require_y,
        n_features=None,
        column_names=None,
        float32=False,
        advice="Drop or impute them.",
    )
    x = x.reshape(len(x), -1)
    y = None if y is None else y.reshape(-1)
    sample_weight = None if sample_weight is None else sample_weight.reshape(-1)
    return x, y, sample_weight


def _check(x, y, sample_weight, *, names, require_y, n_features, column_names, float32,
           advice):
    """Checks one `(x, y, sample_weight)` triple; returns them as NumPy arrays."""
    x_name, y_name, w_name = names
    x_array = _to_array(x, x_name)
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
    columns = 1 if x_array.ndim == 1 else x_array.shape[1]
    if columns == 0:
        raise ValueError(
            f"Received an invalid `{x_name}` with no columns, expected at least one "
            f"feature. Received: {x_name}.shape={x_array.shape}"
        )
    if n_features is not None and columns != n_features:
        received = "(n,)" if x_array.ndim == 1 else f"(n, {columns})"
        raise ValueError(
            f"Received an invalid `{x_name}`: this model has n_features={n_features}, "
            f"so it expected shape (n, {n_features}), but received {received}. "
            f"Received: {x_name}.shape={x_array.shape}"
        )
    _check_finite(x_array, x_name, column_names, float32, advice)

    y_array = None
    if y is not None:
        y_array = _to_array(y, y_name)
        _check_vector(y_array, y_name, n, x_name)
        _check_finite(y_array, y_name, None, float32, advice)
    elif require_y:
        raise ValueError(
            f"Received `{x_name}` as an array but no `{y_name}`: expected `{y_name}` "
            f"of shape ({n},), the targets."
        )

    w_array = None
    if sample_weight is not None:
        w_array = _to_array(sample_weight, w_name)
        _check_vector(w_array, w_name, n, x_name)
        _check_finite(w_array, w_name, None, float32, advice)
        if w_array.dtype.kind in "if" and w_array.size and w_array.min() < 0:
            row = int(np.flatnonzero(w_array.reshape(-1) < 0)[0])
            raise ValueError(
                f"Received an invalid `{w_name}`, expected non-negative weights: a "
                "negative weight makes the weighted mean squared error unbounded "
                f"below. First negative value at row {row}: "
                f"{w_name}[{row}]={float(w_array.reshape(-1)[row])!r}"
            )
    return x_array, y_array, w_array


def first_invalid_value(values, *, float32=True, non_negative=False):
    """The first entry of a float vector the model cannot use, or None.

    The value rules of `fit` for one column of data read from a file: finite
    (no NaN, no ±inf), within float32's finite range (`|v| <= 3.4028235e38`,
    else it would become inf in the model's float32) when `float32`, and
    `>= 0` when `non_negative` (sample weights). One `min`/`max` pass when
    everything is valid; the masks are built only to locate a bad entry.

    Args:
        values: A 1-D float NumPy array (float64, or float32 as stored).
        float32: Whether to check the float32 range.
        non_negative: Whether negative values are invalid.

    Returns:
        None, or `(index, problem)`: the 0-based index of the first invalid
        entry and a phrase saying what is wrong with it.
    """
    if values.size == 0:
        return None
    low, high = values.min(), values.max()  # NaN and ±inf propagate into these
    if (
        np.isfinite(low)
        and np.isfinite(high)
        and not (float32 and max(-low, high) > _FLOAT32_MAX)
        and not (non_negative and low < 0)
    ):
        return None
    rules = [(~np.isfinite(values), "is not finite (NaN or ±inf)")]
    if float32:
        rules.append((
            np.isfinite(values) & (np.abs(values) > _FLOAT32_MAX),
            f"is outside float32's finite range (|v| > {_FLOAT32_MAX:.8g}) and would "
            "become inf in the model's float32",
        ))
    if non_negative:
        rules.append((
            values < 0,
            "is negative: a negative weight makes the weighted mean squared error "
            "unbounded below",
        ))
    found = [(int(np.argmax(mask)), problem) for mask, problem in rules if mask.any()]
    return min(found, key=lambda item: item[0])


def _to_array(value, name):
    """A NumPy view of `value` (no copy for NumPy arrays), numeric dtype checked."""
    if _is_pandas(value):
        _check_pandas_dtypes(value, name)
    try:
        array = to_numpy(value)
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


def _check_finite(array, name, column_names, float32, advice):
    """Raises if `array` holds NaN/±inf, or (`float32`) float64 values beyond float32."""
    if array.dtype.kind != "f" or array.size == 0:
        return  # integers and booleans are always finite
    with np.errstate(over="ignore", invalid="ignore"):
        total = array.sum() if array.dtype.itemsize <= 4 else None
    if total is not None and np.isfinite(total):
        # One pass instead of two: NaN and ±inf propagate into the sum, and float32
        # values are within float32's range (an overflowing sum falls through).
        return
    low, high = array.min(), array.max()  # NaN and ±inf propagate into these
    if np.isfinite(low) and np.isfinite(high):
        if float32 and array.dtype.itemsize > 4 and max(-low, high) > _FLOAT32_MAX:
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
        f"{_locate(array, bad, name, column_names)}. {advice}"
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


# ------------------------------------------------------------ batched iterables
def is_batched(x, y=None) -> bool:
    """Whether `x`, given without `y`, is a finite iterable of batches.

    Batches are `(x, y)` or `(x, y, sample_weight)` tuples of arrays or tensors:
    a `tf.data.Dataset` of batches, a list of tuples, a generator. Arrays,
    tensors, pandas objects, strings and dicts are not batches.
    """
    if y is not None or x is None:
        return False
    if isinstance(x, tf.data.Dataset):
        return True
    if isinstance(x, (np.ndarray, tf.Tensor, tf.Variable, str, bytes, dict)) or _is_pandas(x):
        return False
    return isinstance(x, collections.abc.Iterable)


def reiterable(data) -> bool:
    """Whether iterating `data` again starts it over (a list, a `tf.data.Dataset`).

    Iterators and generators are consumed by one pass.
    """
    return not isinstance(data, collections.abc.Iterator)


def column_names(x) -> tuple[str, ...] | None:
    """The feature names of a pandas `x` (a DataFrame's columns, a named Series), or None."""
    if not _is_pandas(x):
        return None
    if hasattr(x, "columns"):
        return tuple(str(column) for column in x.columns)
    name = getattr(x, "name", None)
    return None if name is None else (str(name),)


def batches(data, name="x"):
    """Checks and yields the batches of an iterable: `(x, y, sample_weight)` NumPy arrays.

    Each element must be an `(x, y)` or `(x, y, sample_weight)` tuple obeying
    `check_arrays`' rules; every batch must have the first one's feature count.
    An iterable with no batch is refused.

    Yields:
        `(index, x, y, sample_weight, names)`: `x` of shape `(m, k)`, `y` and
        `sample_weight` of shape `(m,)` (`sample_weight` None when absent), and
        the batch's pandas column names (a `dataset_from_files` dataset's
        feature names), or None. A `dataset_from_files` dataset is read
        straight from its files as NumPy batches, not through `tf.data`.
    """
    source = data
    n_features = None
    index = -1
    file_names = None
    reader = getattr(data, FILE_READER_ATTRIBUTE, None) if is_file_dataset(data) else None
    if reader is not None:
        # A `dataset_from_files` dataset: its reader's NumPy batches, without
        # `tf.data` (no copies into tensors; a `DataFileError` arrives as itself).
        file_names = _file_features(data)
        data = reader()
    for index, element in enumerate(data):
        if not isinstance(element, (tuple, list)) or len(element) not in (2, 3):
            raise ValueError(
                f"Received an invalid batch {index} of `{name}`, expected an `(x, y)` or "
                "`(x, y, sample_weight)` tuple of arrays. Received: "
                f"{type(element).__name__}"
                + (f" of length {len(element)}" if isinstance(element, (tuple, list)) else "")
            )
        x, y, *weights = element
        names = column_names(x) if file_names is None else tuple(file_names)
        try:
            x, y, weights = check_arrays(x, y, weights[0] if weights else None)
        except ValueError as error:
            raise ValueError(f"Received an invalid batch {index} of `{name}`: {error}") from None
        if n_features is None:
            n_features = x.shape[1]
        elif x.shape[1] != n_features:
            raise ValueError(
                f"Received an invalid batch {index} of `{name}`: its x has {x.shape[1]} "
                f"features, but the first batch had {n_features}. Received: "
                f"x.shape={x.shape}"
            )
        yield index, x, y, weights, names
    if index < 0:
        raise ValueError(
            f"Received an empty iterable as `{name}`, expected at least one "
            f"`(x, y)` batch. Received: {name}={source!r}"
        )
