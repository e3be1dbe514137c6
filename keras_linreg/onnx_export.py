"""ONNX export: the SavedModel's serving contract, `x` -> `y`, as one `.onnx` file.

Converted from the model's own `call` with tf2onnx (the optional `onnx`
extra), written atomically like the SavedModel export. See docs/onnx.md.
"""

from __future__ import annotations

import json
import logging
import os
import warnings

import tensorflow as tf

from keras_linreg import _atomic
from keras_linreg.export import (
    FEATURE_NAMES_ATTRIBUTE,
    INPUT_NAME,
    OUTPUT_NAME,
    _built_n_features,
    _feature_names,
)

#: The symbolic name of the batch dimension, shared by `x` and `y`.
BATCH_DIMENSION = "n"

_INSTALL_HINT = "pip install 'keras_linreg[onnx]'"


def export_onnx(model, path, overwrite=False, *, opset_version=None, verbose=False):
    """Exports `model` as an ONNX file for inference, atomically.

    The graph has one input and one output, the contract of the SavedModel's
    `serving_default` signature:

    ```
    x: float32 [n, n_features]  ->  y: float32 [n]
    y = model(x, training=False) = x · slope + intercept
    ```

    where `n` is a symbolic (any) batch size. It is the model's own `call`,
    so a `standardize=True` model serves raw-unit inputs and outputs. The
    feature names travel in the model's metadata, `metadata_props`, as the
    JSON list `feature_names` (`[]` when the model has none); onnxruntime
    reads them with `session.get_modelmeta().custom_metadata_map`.

    The file is written to a hidden temporary beside `path` and renamed into
    place, so `path` is never half-written, and an existing `path` is refused
    unless `overwrite=True` (as `export_saved_model` does).

    Needs tf2onnx: `pip install 'keras_linreg[onnx]'` (which also installs
    onnxruntime to run the result).

    Args:
        model: A built `keras_linreg.LinearRegression` (fitted, called on
            data, built, or constructed with `n_features=`).
        path: Local file to create, e.g. `"linreg.onnx"`. Missing parents
            are created.
        overwrite: If False (default), an existing `path` raises
            `FileExistsError`. If True, an existing file is replaced; a
            directory is refused.
        opset_version: Optional ONNX opset; tf2onnx's default when None.
        verbose: Whether to print where the file was written and its
            contract.

    Raises:
        ValueError: If the model is not built, or `path` is not a local path
            or is a directory.
        FileExistsError: If `path` exists and `overwrite` is False.
        ImportError: If tf2onnx is not installed.
    """
    n_features = _built_n_features(model)
    if opset_version is not None and (
        isinstance(opset_version, bool) or not isinstance(opset_version, int) or opset_version < 1
    ):
        raise ValueError(
            "Received an invalid value for `opset_version`, expected a positive "
            f"integer or None. Received: opset_version={opset_version!r}"
        )
    names = list(_feature_names(model) or ())
    convert = _import_tf2onnx()

    spec = tf.TensorSpec([None, n_features], tf.float32, name=INPUT_NAME)

    @tf.function(input_signature=[spec], autograph=False)
    def serving_default(x):
        # A dict, so tf2onnx names the graph's output after its key.
        return {OUTPUT_NAME: tf.cast(model(x, training=False), tf.float32)}

    def write(tmp_file):
        proto = _convert(convert, serving_default, spec, opset_version)
        _name_batch_dimension(proto)
        entry = proto.metadata_props.add()
        entry.key, entry.value = FEATURE_NAMES_ATTRIBUTE, json.dumps(names)
        with open(tmp_file, "wb") as f:
            f.write(proto.SerializeToString())

    _write_file_atomically(path, write, overwrite)
    if verbose:
        print(
            f"Saved artifact at '{os.fspath(path)}'. ONNX graph: {INPUT_NAME}: float32 "
            f"[None, {n_features}] -> {OUTPUT_NAME}: float32 [None]. "
            f"feature_names={tuple(names) or None}"
        )


def _import_tf2onnx():
    """`tf2onnx.convert`, imported without changing the user's environment.

    Importing `tf2onnx.convert` sets `os.environ["TF_CPP_MIN_LOG_LEVEL"]`;
    the caller's value (or its absence) is put back.
    """
    saved = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
    try:
        from tf2onnx import convert
    except ImportError as error:
        raise ImportError(
            f"Exporting to ONNX needs tf2onnx, which is not installed: {_INSTALL_HINT} "
            f"(it installs tf2onnx and onnxruntime). Received: {error}"
        ) from error
    finally:
        if saved is None:
            os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
        else:
            os.environ["TF_CPP_MIN_LOG_LEVEL"] = saved
    return convert


def _convert(convert, function, spec, opset_version):
    """Runs tf2onnx on `function`; returns the ONNX `ModelProto`.

    tf2onnx's own log lines (opset chosen, graph rewrites) are kept off the
    console, as are warnings raised inside tf2onnx and onnx themselves: they
    are about the converter, not about anything the caller can change.
    Errors still raise.
    """
    logger = logging.getLogger("tf2onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            for module in (r"tf2onnx(\..*)?", r"onnx(\..*)?"):
                warnings.filterwarnings("ignore", category=FutureWarning, module=module)
                warnings.filterwarnings("ignore", category=DeprecationWarning, module=module)
            proto, _ = convert.from_function(function, input_signature=[spec], opset=opset_version)
    finally:
        logger.setLevel(level)
    return proto


def _name_batch_dimension(proto):
    """Names the batch dimension of `x` and `y` alike (tf2onnx: `unk__N`), so
    the graph itself says they have the same number of rows."""
    graph = proto.graph
    if [i.name for i in graph.input] != [INPUT_NAME] or [o.name for o in graph.output] != [
        OUTPUT_NAME
    ]:
        raise RuntimeError(  # tf2onnx changed how it names tensors
            f"tf2onnx produced inputs {[i.name for i in graph.input]} and outputs "
            f"{[o.name for o in graph.output]}; expected [{INPUT_NAME!r}] and [{OUTPUT_NAME!r}]."
        )
    for value in (graph.input[0], graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_param = BATCH_DIMENSION


def _write_file_atomically(path, write, overwrite):
    """`write(tmp)` then rename to `path`, with the package's one atomic writer."""
    target = _atomic.local_path(path, "path")
    _atomic.check_target(target, overwrite)  # before any work
    _atomic.write_atomically(target, write, overwrite=overwrite, suffix=".onnx")
