"""Exports for serving, atomic `.keras` saves, and one way to reload either.

`export_saved_model` writes a SavedModel whose `serving_default` signature maps
`x: float32 [None, n_features]` to `{"y": float32 [None]}` (plus the stock `serve`
endpoint and the feature names as a variable collection); `save_model` writes a
`.keras` file; both atomically (`_atomic.py`). `load_predictor` reads either back.
Design notes: docs/design/export.md and docs/design/atomic-writes.md.
"""

from __future__ import annotations

import os
import zipfile

import keras
import numpy as np
import tensorflow as tf

from keras_linreg import _atomic

SERVING_SIGNATURE = "serving_default"
INPUT_NAME = "x"
OUTPUT_NAME = "y"
FEATURE_NAMES_ATTRIBUTE = "feature_names"
_STOCK_ENDPOINT = "serve"
# What `overwrite=True` may replace at an export's path.
_SAVED_MODEL_TARGET = dict(
    directory=True,
    replaceable=lambda path: _is_saved_model_dir(path) or not os.listdir(path),
    expected="a SavedModel directory (or an empty directory)",
)


# ---------------------------------------------------------------- exporting
def export_saved_model(model, path, overwrite=False, *, verbose=False):
    """Exports `model` as a TensorFlow SavedModel for serving, atomically.

    The SavedModel's `serving_default` signature maps `x`, float32
    `[None, n_features]`, to `{"y": float32 [None]}` with
    `y = model(x, training=False)`, i.e. `x · slope + intercept` for a
    `LinearRegression`. A `serve` endpoint returns the same tensor unnamed
    (the stock `model.export()` endpoint). `feature_names` travels as a
    variable collection (see docs/design/export.md).

    The export is written to a temporary directory beside `path` and renamed
    into place, so `path` is never half-written (see docs/design/atomic-writes.md).

    Args:
        model: A built `keras_linreg.LinearRegression` (fitted, called on
            data, built, or constructed with `n_features=`), e.g. one loaded
            from a `.keras` file.
        path: Local directory to create, e.g. `"models/linreg/1"` (TF
            Serving's `<base>/<version>/` layout). Missing parents are
            created.
        overwrite: If False (default), an existing `path` raises
            `FileExistsError`. If True, an existing SavedModel directory (or
            empty directory) at `path` is replaced; anything else there is
            refused rather than deleted.
        verbose: Whether to print where the artifact was written and its
            signature.

    Raises:
        ValueError: If the model is not built, or `path` is not a local path
            or holds something that is not a SavedModel while
            `overwrite=True`.
        FileExistsError: If `path` exists and `overwrite` is False.
    """
    n_features = _built_n_features(model)
    _atomic.check_target(_atomic.local_path(path), overwrite, **_SAVED_MODEL_TARGET)

    spec = tf.TensorSpec([None, n_features], tf.float32, name=INPUT_NAME)

    def serving_default(x):
        return {OUTPUT_NAME: tf.cast(model(x, training=False), tf.float32)}

    def serve(x):
        return tf.cast(model(x, training=False), tf.float32)

    names = list(_feature_names(model) or ())

    def write(tmp_dir):
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(SERVING_SIGNATURE, serving_default, input_signature=[spec])
        archive.add_endpoint(_STOCK_ENDPOINT, serve, input_signature=[spec])
        # A variable because tf.saved_model.save drops plain tensor attributes;
        # `add_variable_collection` is ExportArchive's public way to attach one.
        names_variable = tf.Variable(
            tf.constant(names, dtype=tf.string, shape=[len(names)]),
            trainable=False,
            name=FEATURE_NAMES_ATTRIBUTE,
        )
        archive.add_variable_collection(FEATURE_NAMES_ATTRIBUTE, [names_variable])
        archive.write_out(tmp_dir, verbose=False)

    _atomic.write_atomically(path, write, overwrite=overwrite, **_SAVED_MODEL_TARGET)
    if verbose:
        print(
            f"Saved artifact at '{os.fspath(path)}'. Signature '{SERVING_SIGNATURE}': "
            f"{INPUT_NAME}: float32 [None, {n_features}] -> {OUTPUT_NAME}: float32 [None]; "
            f"endpoint '{_STOCK_ENDPOINT}' returns the same tensor unnamed. "
            f"feature_names={tuple(names) or None}"
        )


def save_model(model, path, overwrite=False, **kwargs):
    """Saves `model` as a `.keras` file, atomically.

    Keras writes the zip to a temporary `.keras` file beside `path`, which is
    then renamed to `path` (`os.replace` when overwriting), so `path` always
    holds a complete model: the old one or the new one.

    `LinearRegression.save()` goes through here for local `.keras` paths,
    with Keras' default `overwrite=True`.

    Args:
        model: A Keras model.
        path: Local path ending in `.keras`. Missing parents are created.
        overwrite: If False (default), an existing `path` raises
            `FileExistsError` (Keras would ask on the terminal instead). If
            True, an existing file is replaced; a directory is refused.
        **kwargs: Passed to `keras.saving.save_model` (e.g.
            `include_optimizer`).

    Raises:
        ValueError: If `path` is not a local path ending in `.keras`, or is a
            directory.
        FileExistsError: If `path` exists and `overwrite` is False.
    """
    target = _atomic.local_path(path)
    if not target.endswith(".keras"):
        raise ValueError(
            "Received an invalid value for `path`, expected a path ending in "
            f"`.keras`. Received: path={os.fspath(path)!r}"
        )
    _atomic.check_target(target, overwrite)

    def write(tmp_file):
        keras.saving.save_model(model, tmp_file, overwrite=True, **kwargs)

    _atomic.write_atomically(target, write, overwrite=overwrite, suffix=".keras")


def _saves_atomically(filepath, zipped=None):
    """Whether `model.save(filepath, zipped=zipped)` goes through `save_model`:
    local `.keras` zip files do; `.h5`, unzipped directories, `hf://` and
    other URLs, and file objects keep Keras' own saving."""
    return (
        zipped is not False
        and isinstance(filepath, (str, os.PathLike))
        and os.fspath(filepath).endswith(".keras")
        and "://" not in os.fspath(filepath)
    )


def _feature_names(model):
    """`model.feature_names` as a tuple of str, or None."""
    names = getattr(model, "feature_names", None)
    return tuple(names) if names else None


def _built_n_features(model):
    n_features = getattr(model, "n_features", None)
    if not getattr(model, "built", False) or n_features is None:
        raise ValueError(
            "This model has not been built yet, so it has no weights to export: "
            "fit or build it first (`model.fit(x, y)`, `model.build((None, n_features))`, "
            "or construct it with `LinearRegression(n_features=...)`). "
            f"Received: model.built={getattr(model, 'built', None)}, n_features={n_features}"
        )
    return int(n_features)


# ---------------------------------------------------------------- reloading
def load_predictor(path):
    """Loads a SavedModel directory or a `.keras` file for prediction.

    Args:
        path: A SavedModel directory (e.g. from `export_saved_model`, or a
            stock `model.export()` with one input and one output) or a
            `.keras` file.

    Returns:
        `(predict_fn, feature_names)`. `predict_fn(x)` takes an array-like of
        shape `(n, n_features)` (or `(n,)` when `n_features == 1`) and
        returns a float32 NumPy array of shape `(n,)`. `feature_names` is a
        tuple of str, or None if the model has none.

    Raises:
        FileNotFoundError: If `path` does not exist.
        ValueError: If `path` is neither a SavedModel directory nor a
            `.keras` file.
    """
    local = os.fspath(path)
    if not os.path.exists(local):
        raise FileNotFoundError(
            "Received an invalid value for `path`, expected a SavedModel directory "
            f"or a `.keras` file, but nothing exists there. Received: path={local!r}"
        )
    if os.path.isdir(local):
        if not _is_saved_model_dir(local):
            raise ValueError(
                "Received an invalid value for `path`, expected a SavedModel directory "
                "(containing saved_model.pb) or a `.keras` file, but this directory is "
                f"not a SavedModel. Received: path={local!r}"
            )
        return _load_saved_model(local)
    if local.endswith(".keras") and zipfile.is_zipfile(local):
        return _load_keras_file(local)
    raise ValueError(
        "Received an invalid value for `path`, expected a SavedModel directory or a "
        f"`.keras` file (a zip archive). Received: path={local!r}"
    )


def _load_saved_model(path):
    loaded = tf.saved_model.load(path)
    signature = loaded.signatures.get(SERVING_SIGNATURE)
    if signature is None:
        raise ValueError(
            f"The SavedModel at {path!r} has no '{SERVING_SIGNATURE}' signature. "
            f"Received signatures: {sorted(loaded.signatures)}"
        )
    inputs = signature.structured_input_signature[1]
    outputs = signature.structured_outputs
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(
            f"The SavedModel at {path!r} has a '{SERVING_SIGNATURE}' signature with "
            "several inputs or outputs; expected one of each (`x` -> `y`). Received: "
            f"inputs={sorted(inputs)}, outputs={sorted(outputs)}"
        )
    (input_name, input_spec), (output_name,) = next(iter(inputs.items())), list(outputs)
    n_features = input_spec.shape[-1] if input_spec.shape.rank == 2 else None

    def predict_fn(x):
        x = _as_matrix(x, n_features)
        return signature(**{input_name: tf.constant(x, input_spec.dtype)})[output_name].numpy()

    return predict_fn, _saved_feature_names(loaded)


def _saved_feature_names(loaded):
    """The `feature_names` collection written by `export_saved_model`, or None."""
    collection = getattr(loaded, FEATURE_NAMES_ATTRIBUTE, None)
    if not isinstance(collection, (list, tuple)) or len(collection) != 1:
        return None  # e.g. a stock `model.export()`
    variable = collection[0]
    if not isinstance(variable, tf.Variable) or variable.dtype != tf.string:
        return None
    return tuple(name.decode("utf-8") for name in variable.numpy()) or None


def _load_keras_file(path):
    model = keras.saving.load_model(path)
    n_features = getattr(model, "n_features", None)

    def predict_fn(x):
        x = _as_matrix(x, n_features)
        return np.asarray(keras.ops.convert_to_numpy(model(x, training=False)), "float32")

    return predict_fn, _feature_names(model)


def _as_matrix(x, n_features):
    x = np.asarray(x, dtype="float32")
    if x.ndim == 1 and n_features in (1, None):
        x = x[:, np.newaxis]
    if x.ndim != 2 or (n_features is not None and x.shape[1] != n_features):
        raise ValueError(
            "Received an invalid `x`, expected shape `(n, n_features)` with "
            f"n_features={n_features}"
            + (" (or `(n,)`)" if n_features == 1 else "")
            + f". Received: x.shape={x.shape}"
        )
    return x


def _is_saved_model_dir(path):
    return any(
        os.path.isfile(os.path.join(path, name))
        for name in ("saved_model.pb", "saved_model.pbtxt")
    )
