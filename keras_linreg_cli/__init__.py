"""`keras-linreg`: the command line over `keras_linreg`.

A package of its own, above the library: arguments are parsed and checked here
before TensorFlow is imported, so `--help` and argument errors are instant.
Design notes: docs/design/command-line.md.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

PROG = "keras-linreg"

_EPILOG_DEMO = """examples:
  keras-linreg demo
  keras-linreg demo --epochs 300 --learning-rate 0.02 --seed 1 --out out/demo
  keras-linreg demo --table
  keras-linreg demo --table --no-model --tolerance 1e-6
"""
_DEMO_DEFAULTS = {"epochs": 100, "learning_rate": 0.01, "out": "out/demo"}
_TABLE_DEFAULTS = {"tolerance": 1e-4, "max_epochs": 10_000}
_EPILOG_TRAIN = """examples:
  keras-linreg train houses.csv --target price
  keras-linreg train houses.csv --target price --features area,rooms \\
      --validation-split 0.2 --export models/houses/1 --save houses.keras --plot houses.png
  keras-linreg train houses.csv --target price --no-standardize --learning-rate 1e-6 \\
      --epochs 500 --tol 0
  keras-linreg train houses.csv --target price --learning-rate 0.001,0.01,0.1,1.0 \\
      --log-dir logs/houses-sweep      # a sweep: one run per rate, for TensorBoard's HParams
  keras-linreg train 'data/houses-*.parquet' --target price --learning-rate 0.1 \\
      --memory-budget 0                # stream from the files in batches of 65536 rows
"""
_EPILOG_PREDICT = """examples:
  keras-linreg predict models/houses/1 new_houses.csv
  keras-linreg predict houses.keras new_houses.csv --output predictions.csv
  keras-linreg predict houses.keras 'new/*.csv.gz' --output predictions.parquet
"""
_EPILOG_EXPORT = """examples:
  keras-linreg export houses.keras houses.onnx
  keras-linreg export houses.keras models/houses/1 --format saved_model --overwrite
"""


class UsageError(Exception):
    """A bad command line: reported as one line on stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):
    # argparse prints the whole usage before its error; one line is enough.
    def error(self, message):
        raise UsageError(f"{self.prog}: error: {message}")


def _positive_float(name):
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number > 0, received {text!r}") from None
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"expected a number > 0, received {text!r}")
        return value

    parse.__name__ = name
    return parse


def _non_negative_float(name):
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a number >= 0, received {text!r}"
            ) from None
        if not (math.isfinite(value) and value >= 0):
            raise argparse.ArgumentTypeError(f"expected a number >= 0, received {text!r}")
        return value

    parse.__name__ = name
    return parse


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, received {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, received {text!r}")
    return value


def _fraction(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number in [0, 1), received {text!r}"
        ) from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), received {text!r}")
    return value


def _names(text):
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated column names, received {text!r}"
        )
    return names


def build_parser() -> argparse.ArgumentParser:
    """The `keras-linreg` argument parser (no TensorFlow involved)."""
    from keras_linreg_cli import export_command, sweep

    parser = _Parser(
        prog=PROG,
        description="Linear regression y = x·slope + intercept, trained by plain SGD in Keras.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    formatter = argparse.RawDescriptionHelpFormatter

    demo = commands.add_parser(
        "demo",
        help="the tutorial end to end: y = x + N(0, 1), 100 full-batch epochs",
        description="Reproduces the tutorial: x = linspace(0, 10, 100), y = x + N(0, 1), "
        "slope and intercept from 0, full-batch gradient descent. Prints each epoch's loss, "
        "the final parameters beside the least-squares optimum, and the epochs a standardized "
        "run needs; writes TensorBoard logs, a PNG and a SavedModel. With --table, prints "
        "instead the epochs raw and standardized features need at several learning rates.",
        epilog=_EPILOG_DEMO,
        formatter_class=formatter,
    )
    demo.add_argument("--epochs", type=_positive_int, help="default 100")
    demo.add_argument("--learning-rate", type=_positive_float("learning rate"), help="default 0.01")
    demo.add_argument("--seed", type=int, default=0, help="seed of the data's noise (default 0)")
    demo.add_argument(
        "--log-dir", help="TensorBoard run directory (default: a new logs/demo/<timestamp>)"
    )
    demo.add_argument("--out", help="where the PNG and SavedModel go (default out/demo)")
    demo.add_argument("--quiet", action="store_true", help="print only the summary")
    table = demo.add_argument_group("convergence table")
    table.add_argument(
        "--table",
        action="store_true",
        help="print the full-batch epochs to within --tolerance of least squares, raw vs "
        "standardized features, float64 NumPy beside the model; no training output",
    )
    table.add_argument(
        "--tolerance", type=_positive_float("tolerance"), help="with --table (default 1e-4)"
    )
    table.add_argument("--max-epochs", type=_positive_int, help="with --table (default 10000)")
    table.add_argument(
        "--no-model", action="store_true", help="with --table: the NumPy column only (fast)"
    )

    train = commands.add_parser(
        "train",
        help="fit a target column of CSV or Parquet files",
        description="Fits TARGET = features · slope + intercept on CSV (.csv, .csv.gz, with a "
        "header row) or Parquet (.parquet) files, read with pyarrow. Data within "
        "--memory-budget is loaded and trained in memory; larger data streams from the "
        "files in batches (--batch-size, default 65536), which needs a numeric "
        "--learning-rate.",
        epilog=_EPILOG_TRAIN,
        formatter_class=formatter,
    )
    train.add_argument(
        "data", metavar="DATA", nargs="+", help="CSV, CSV.GZ or Parquet files, or globs"
    )
    train.add_argument("--target", required=True, metavar="COL")
    train.add_argument(
        "--features", type=_names, metavar="A,B,...", help="default: every other numeric column"
    )
    train.add_argument(
        "--epochs",
        type=_positive_int,
        default=10_000,
        help="the most epochs; training stops earlier once the parameters are within --tol "
        "of the least-squares optimum (default 10000)",
    )
    train.add_argument(
        "--learning-rate",
        type=sweep.parse_learning_rates,
        default="auto",
        metavar="RATE[,RATE...]",
        help="a number > 0, or auto: 1 / the largest eigenvalue of the loss's Hessian on "
        "the training rows, half the largest stable rate (default auto); several numbers, "
        "comma-separated, run a sweep (one run each under --log-dir)",
    )
    train.add_argument(
        "--tol",
        type=_non_negative_float("tol"),
        default=1e-5,
        help="stop at the first epoch whose parameters are within tol of the least-squares "
        "optimum (relative to their scale: 1e-5 gives at least 4 significant digits); 0 "
        "runs all --epochs (default 1e-5)",
    )
    train.add_argument(
        "--batch-size",
        type=_positive_int,
        help="default: the whole data in memory, 65536 rows when streaming",
    )
    _add_memory_budget(train, "train in memory")
    train.add_argument("--validation-split", type=_fraction, default=0.0)
    train.add_argument(
        "--standardize",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="learn on standardized features, parameters still reported in raw units "
        "(default: on; --no-standardize learns on the raw features)",
    )
    train.add_argument(
        "--no-intercept",
        action="store_true",
        help="fit through the origin, TARGET = features · slope (the intercept stays 0)",
    )
    train.add_argument(
        "--l1",
        type=_non_negative_float("l1"),
        default=0.0,
        help="L1 penalty on the slope, l1·Σ|slope| (lasso; exact zeros)",
    )
    train.add_argument(
        "--l2",
        type=_non_negative_float("l2"),
        default=0.0,
        help="L2 penalty on the slope, l2·Σ slope² (ridge)",
    )
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--log-dir", help="TensorBoard run directory (default: logs/train/<time>)")
    train.add_argument("--no-log", action="store_true", help="write no TensorBoard logs")
    train.add_argument("--export", metavar="DIR", help="write a SavedModel here (must not exist)")
    train.add_argument("--save", metavar="FILE.keras", help="write a .keras file (must not exist)")
    train.add_argument(
        "--plot",
        metavar="FILE.png",
        help="write a figure of the fit and the loss; .png, .pdf or .svg (must not exist)",
    )
    train.add_argument(
        "--report",
        metavar="FILE.json",
        help="write the report as JSON: each parameter beside the optimum, its gap, se, t, p "
        "and 95%% interval, plus R², adjusted R², F and p(F) (must not exist)",
    )
    train.add_argument(
        "--quiet", action="store_true", help="no progress output (piped: one line per epoch)"
    )

    predict = commands.add_parser(
        "predict",
        help="predict with a SavedModel directory or a .keras file",
        description="Writes the DATA files' columns plus a last column `prediction`, as CSV "
        "(standard output, or --output FILE) or Parquet (--output FILE.parquet), reading and "
        "writing block by block. Columns are matched by name to the features the model was "
        "trained on.",
        epilog=_EPILOG_PREDICT,
        formatter_class=formatter,
    )
    predict.add_argument("model", metavar="MODEL")
    predict.add_argument(
        "data", metavar="DATA", nargs="+", help="CSV, CSV.GZ or Parquet files, or globs"
    )
    predict.add_argument(
        "--features", type=_names, metavar="A,B,...", help="for a model saved without names"
    )
    predict.add_argument(
        "--output",
        metavar="FILE",
        help="written atomically: Parquet if it ends in .parquet, gzipped CSV in .gz, else "
        "CSV (default: CSV on standard output)",
    )
    _add_memory_budget(predict, "hold standard output until the end (all or nothing)")

    export = commands.add_parser(
        "export",
        help="write a .keras model as an ONNX file or a SavedModel for serving",
        description="Writes MODEL.keras for serving: x float32 [None, n_features] -> y float32 "
        "[None]. --format defaults to onnx when OUT ends in .onnx, else saved_model. OUT is "
        "written atomically; an existing OUT is refused unless --overwrite.",
        epilog=_EPILOG_EXPORT,
        formatter_class=formatter,
    )
    export.add_argument("model", metavar="MODEL.keras")
    export.add_argument("out", metavar="OUT")
    export.add_argument(
        "--format",
        choices=export_command.FORMATS,
        help="default: onnx if OUT ends in .onnx, else saved_model",
    )
    export.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    return parser


def _add_memory_budget(parser, what):
    from keras_linreg_cli.files import DEFAULT_MEMORY_BUDGET, parse_byte_size

    parser.add_argument(
        "--memory-budget",
        type=parse_byte_size,
        default=parse_byte_size(DEFAULT_MEMORY_BUDGET),
        metavar="SIZE",
        help=f"the largest data to {what}: the used columns as float32 (e.g. 500MB, "
        f"2GiB; 0 always streams; default {DEFAULT_MEMORY_BUDGET})",
    )


def _check_demo(args) -> None:
    """`demo`'s options belong to the demo or to `--table`, not both; fills defaults."""
    prog = f"{PROG} {args.command}"
    given, other = (
        (_TABLE_DEFAULTS, _DEMO_DEFAULTS | {"log_dir": None, "quiet": False})
        if args.table
        else (_DEMO_DEFAULTS, _TABLE_DEFAULTS | {"no_model": False})
    )
    for name in other:
        if getattr(args, name) not in (None, False):
            option = "--" + name.replace("_", "-")
            if args.table:
                raise UsageError(f"{prog}: error: {option} is for the demo, not for --table")
            raise UsageError(f"{prog}: error: {option} only applies with --table")
    for name, default in given.items():
        if getattr(args, name) is None:
            setattr(args, name, default)


def _check_paths(args) -> None:
    """File checks that need no TensorFlow; raises UsageError."""
    prog = f"{PROG} {args.command}"
    if args.command == "demo":
        _check_demo(args)
    if getattr(args, "model", None) is not None and not os.path.exists(args.model):
        raise UsageError(f"{prog}: error: {args.model}: no such file or directory")
    if getattr(args, "data", None) is not None:
        from keras_linreg_cli.files import DataError, expand

        try:
            args.data = expand(args.data)
        except DataError as error:
            raise UsageError(f"{prog}: error: {error}") from None
    if args.command == "predict":
        if not (os.path.isdir(args.model) or args.model.endswith(".keras")):
            raise UsageError(
                f"{prog}: error: {args.model}: expected a SavedModel directory or a .keras file"
            )
        if args.output is not None:
            _check_writable(prog, "--output", args.output)
    if args.command == "train":
        from keras_linreg_cli.sweep import check_sweep_args

        check_sweep_args(args, prog)
        for option in ("export", "save", "plot", "report"):
            path = getattr(args, option)
            if path is not None and os.path.lexists(path):
                raise UsageError(
                    f"{prog}: error: --{option} {path} already exists; choose a new path"
                )
            if path is not None:
                _check_writable(prog, f"--{option}", path)
        if args.save is not None and not args.save.endswith(".keras"):
            raise UsageError(f"{prog}: error: --save expects a FILE.keras, received {args.save!r}")
        if args.plot is not None and _plot_format(args.plot) is None:
            raise UsageError(
                f"{prog}: error: --plot expects a file ending in .png, .pdf or .svg, "
                f"received {args.plot!r}"
            )
        if args.no_log and args.log_dir is not None:
            raise UsageError(f"{prog}: error: --no-log and --log-dir exclude each other")
        if args.log_dir is not None:
            if os.path.exists(args.log_dir) and not os.path.isdir(args.log_dir):
                raise UsageError(
                    f"{prog}: error: --log-dir {args.log_dir} is a file; expected a directory"
                )
            _check_writable(prog, "--log-dir", args.log_dir)
        seen = {}
        for option in ("export", "save", "plot", "log_dir"):
            path = getattr(args, option)
            if path is not None:
                key = os.path.abspath(path)
                if key in seen:
                    raise UsageError(
                        f"{prog}: error: --{seen[key]} and --{option.replace('_', '-')} "
                        f"name the same path {path!r}"
                    )
                seen[key] = option.replace("_", "-")
        if args.features is not None and args.target in args.features:
            raise UsageError(f"{prog}: error: --target {args.target!r} is also in --features")
    if args.command == "export":
        from keras_linreg_cli.export_command import check_args

        check_args(args, prog)


def _plot_format(path):
    """The figure format `--plot` names by its extension, or None."""
    extension = os.path.splitext(path)[1].lower().lstrip(".")
    return extension if extension in ("png", "pdf", "svg") else None


def _check_writable(prog, option, path) -> None:
    """Refuses an output path that cannot be written, before any work is done.

    Missing parent directories are created when the output is written; the
    nearest existing ancestor must be a writable directory (not a file).
    """
    if os.path.isdir(path) and option == "--output":
        raise UsageError(f"{prog}: error: {option} {path} is a directory; expected a file path")
    ancestor = os.path.dirname(os.path.abspath(path))
    while not os.path.lexists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise UsageError(
            f"{prog}: error: {option} {path}: {ancestor} is a file, not a directory"
        )
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UsageError(f"{prog}: error: {option} {path}: cannot write into {ancestor}")


def import_tensorflow_quietly() -> None:
    """Imports TensorFlow with file descriptor 2 pointed at /dev/null.

    TensorFlow's C++ start-up and device discovery write lines such as "All log messages before
    absl::InitializeLog() is called are written to STDERR" and "Could not find
    cuda drivers" whatever TF_CPP_MIN_LOG_LEVEL says; they would bury this
    tool's one-line errors. An import error is still reported: Python raises
    it after stderr is restored.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow

        # Device discovery logs too ("failed call to cuInit" without a GPU).
        tensorflow.config.list_logical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def main(argv: list[str] | None = None) -> int:
    """Runs `keras-linreg`; returns the exit status (2 for bad input)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        _check_paths(args)
    except UsageError as error:
        print(error, file=sys.stderr)
        return 2
    except SystemExit as done:  # --help
        return done.code or 0
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")

    # `commands` imports TensorFlow (through import_tensorflow_quietly) only
    # once a command's input files have been read and checked.
    from keras_linreg_cli import commands
    from keras_linreg_cli.files import DataError

    try:
        return commands.run(args)
    except (DataError, commands.InputError) as error:
        print(f"{PROG} {args.command}: error: {error}", file=sys.stderr)
        return 2
    except commands.OutputError as error:
        print(f"{PROG} {args.command}: error: {error}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (`keras-linreg predict ... | head`): stop quietly,
        # as Unix tools do, with the status a SIGPIPE death would give (128 + 13).
        # stdout is pointed at /dev/null so the interpreter's final flush is silent.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except (OSError, ValueError):  # a stdout without a file descriptor
            pass
        return 141
