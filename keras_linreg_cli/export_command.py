"""`keras-linreg export MODEL.keras OUT`: a `.keras` model as an ONNX file or a SavedModel.

`check_args` runs before TensorFlow starts (so a wrong path or a missing
converter is reported at once); `run` loads the model and writes OUT through
`keras_linreg.export_onnx` / `keras_linreg.export_saved_model`, which write
atomically and refuse an existing OUT unless told to overwrite it.
Design notes: docs/design/command-line.md.
"""

from __future__ import annotations

import importlib.util
import os
import zipfile

__all__ = ["FORMATS", "check_args", "default_format", "run"]

#: The values of `--format`.
FORMATS = ("onnx", "saved_model")

_ONNX_EXTRA = "pip install 'keras_linreg[onnx]'"


def default_format(out: str) -> str:
    """`--format` when not given: `onnx` for an OUT ending in `.onnx`, else `saved_model`."""
    return "onnx" if out.lower().endswith(".onnx") else "saved_model"


def check_args(args, prog: str) -> None:
    """The checks that need no TensorFlow; fills in `args.format`.

    Raises:
        keras_linreg_cli.UsageError: MODEL is not a `.keras` zip file, OUT exists
            and `--overwrite` was not given, `--format saved_model` was asked
            for an OUT ending in `.onnx`, or `--format onnx` without tf2onnx.
    """
    from keras_linreg_cli import UsageError

    if not (os.path.isfile(args.model) and args.model.endswith(".keras")):
        raise UsageError(
            f"{prog}: error: {args.model}: expected a .keras file (from `keras-linreg train "
            "--save` or `model.save`)"
        )
    if not zipfile.is_zipfile(args.model):
        raise UsageError(f"{prog}: error: {args.model}: not a .keras file (not a zip archive)")
    if args.format is None:
        args.format = default_format(args.out)
    elif args.format == "saved_model" and args.out.lower().endswith(".onnx"):
        raise UsageError(
            f"{prog}: error: --format saved_model writes a directory, but OUT {args.out!r} "
            "ends in .onnx; use --format onnx or another OUT"
        )
    if os.path.lexists(args.out) and not args.overwrite:
        raise UsageError(
            f"{prog}: error: {args.out} already exists; pass --overwrite to replace it"
        )
    if args.format == "onnx" and importlib.util.find_spec("tf2onnx") is None:
        raise UsageError(
            f"{prog}: error: --format onnx needs tf2onnx, which is not installed: "
            f"{_ONNX_EXTRA} (the `onnx` extra: tf2onnx and onnxruntime)"
        )


def run(args) -> int:
    """Loads MODEL, writes OUT, prints one line naming OUT and its contract."""
    from keras_linreg_cli import import_tensorflow_quietly
    from keras_linreg_cli.commands import InputError

    import_tensorflow_quietly()
    import keras

    import keras_linreg
    from keras_linreg.export import INPUT_NAME, OUTPUT_NAME, SERVING_SIGNATURE

    try:
        model = keras.saving.load_model(args.model)
    except Exception as error:  # noqa: BLE001 - a bad file raises anything from zip to Keras
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise InputError(
            f"{args.model}: not a Keras model this tool can load "
            f"({type(error).__name__}{': ' + reason if reason else ''})"
        ) from None
    if not isinstance(model, keras_linreg.LinearRegression):
        raise InputError(
            f"{args.model}: expected a keras_linreg.LinearRegression, received a "
            f"{type(model).__name__}"
        )
    try:
        if args.format == "onnx":
            keras_linreg.export_onnx(model, args.out, overwrite=args.overwrite)
        else:
            keras_linreg.export_saved_model(model, args.out, overwrite=args.overwrite)
    except ImportError as error:  # tf2onnx found but broken
        raise InputError(f"--format onnx: {error}") from None
    except (FileExistsError, ValueError) as error:  # e.g. OUT is a directory of other files
        raise InputError(str(error).replace("overwrite=True", "--overwrite")) from None

    contract = (
        f"{INPUT_NAME}: float32 [None, {model.n_features}] -> {OUTPUT_NAME}: float32 [None]"
    )
    names = ", ".join(model.feature_names) if model.feature_names else "none"
    if args.format == "onnx":
        print(f"ONNX model: {args.out}   {contract}   feature names: {names}")
    else:
        print(
            f"SavedModel: {args.out}   signature '{SERVING_SIGNATURE}' {contract}   "
            f"feature names: {names}"
        )
    return 0
