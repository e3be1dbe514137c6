"""The `keras-linreg` subcommands: thin wrappers over `keras_linreg`.

Imported only after the arguments were parsed and checked, because importing
`keras_linreg` starts TensorFlow. Every input is validated before training
starts, and every output is written atomically, so a bad input leaves nothing
behind.
"""

from __future__ import annotations

import contextlib
import os
import sys

import numpy as np

from keras_linreg_cli import import_tensorflow_quietly


class InputError(ValueError):
    """Bad input found after TensorFlow started: one line on stderr, exit 2."""


class OutputError(OSError):
    """An output could not be written (none of the outputs was kept): exit 1."""


def _progress(args) -> int:
    """Keras' `verbose`: a progress bar on a terminal, one line per epoch when piped."""
    if args.quiet:
        return 0
    return 1 if sys.stdout.isatty() else 2


class _Outputs:
    """The outputs of one `train`, kept all or none.

    Each output is written atomically by the library; if a later one fails, the
    ones this run already wrote are removed again, so a failed run leaves nothing
    a rerun would trip over (its output paths were checked absent beforehand).
    """

    def __init__(self):
        self._written = []

    def write(self, what, path, function):
        try:
            function()
        except (OSError, ValueError) as error:
            self.discard()
            reason = getattr(error, "strerror", None) or str(error)
            raise OutputError(
                f"could not write {what} {path} ({reason}); no output was kept"
            ) from None
        self._written.append(path)

    def discard(self):
        import shutil

        for path in reversed(self._written):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            elif os.path.lexists(path):
                os.remove(path)
        self._written.clear()


def run(args) -> int:
    if args.command == "export":
        from keras_linreg_cli import export_command

        return export_command.run(args)
    return {"demo": demo, "train": train, "predict": predict}[args.command](args)


def demo(args) -> int:
    import_tensorflow_quietly()
    from keras_linreg_cli import demo as demo_lib

    if args.table:
        from keras_linreg_cli.convergence_table import print_table

        print_table(
            *demo_lib.tutorial_data(args.seed),
            label=f"tutorial data (seed {args.seed})",
            seed=args.seed,
            tolerance=args.tolerance,
            max_epochs=args.max_epochs,
            with_model=not args.no_model,
        )
        return 0
    demo_lib.run_demo(
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        seed=args.seed,
        log_dir=args.log_dir,
        out=args.out,
        quiet=args.quiet,
    )
    return 0


def train(args) -> int:
    import_tensorflow_quietly()
    from keras_linreg_cli.files import load_training
    from keras_linreg_cli.progress import ReadProgress, on_terminal

    # On a terminal, a live line while the files are read: `Read N rows in S s (R rows/s)`.
    reading = ReadProgress("Read") if on_terminal(args) else None
    with reading or contextlib.nullcontext():
        data = load_training(
            args.data, args.target, args.features, args.memory_budget, args.batch_size,
            progress=reading,
        )
        if reading is not None and data.streamed:  # that read was only to size the data
            reading.stop(show=False)
    if data.streamed:  # over --memory-budget: fit on the files, batch by batch
        from keras_linreg_cli.streamed import train_streamed

        return train_streamed(args, data, _Outputs(), InputError, _warn_about_gap)
    x, y, features = data.x, data.y, data.features

    import keras_linreg
    from keras_linreg.callbacks import new_run_dir
    from keras_linreg.inputs import split_point
    from keras_linreg_cli.report import (
        fit_from_arguments,
        format_report,
        summarize,
        write_report,
    )

    train_rows = split_point(len(y), args.validation_split)  # the rows Keras trains on
    if train_rows < 2:
        raise InputError(
            f"--validation-split {args.validation_split} leaves {train_rows} of {len(y)} rows "
            "for training; expected at least 2"
        )
    if len(args.learning_rates) > 1:
        from keras_linreg_cli.sweep import run_sweep

        return run_sweep(args, x, y, features)

    callbacks, log_dir = [], None
    if not args.no_log:
        log_dir = args.log_dir or new_run_dir(os.path.join("logs", "train"))
        callbacks.append(keras_linreg.ParameterLogger(log_dir))
    try:
        model, history = fit_from_arguments(
            args,
            x.astype(np.float32),
            y.astype(np.float32),
            features,
            learning_rate=args.learning_rate,
            callbacks=callbacks,
            verbose=_progress(args),
        )
    except keras_linreg.DivergenceError as error:
        raise InputError(str(error)) from None  # the message names the rate to try
    except ValueError as error:  # the library's input checks, e.g. a float32 overflow
        raise InputError(str(error)) from None
    report = summarize(model, history, x, y, args.validation_split)
    print(format_report(report))
    _warn_if_not_converged(args, model, x[:train_rows], y[:train_rows])
    if log_dir is not None:
        print(f"TensorBoard logs: {log_dir}")
    outputs = _Outputs()
    if args.report:
        outputs.write("the report", args.report, lambda: write_report(args.report, report))
    if args.export:
        outputs.write(
            "the SavedModel", args.export,
            lambda: keras_linreg.export_saved_model(model, args.export),
        )
    if args.save:
        outputs.write(
            "the Keras model", args.save, lambda: keras_linreg.save_model(model, args.save)
        )
    if args.plot:
        from keras_linreg.plotting import plot_fit

        logs = history.history
        outputs.write(
            "the plot",
            args.plot,
            lambda: plot_fit(
                args.plot,
                x[:train_rows],
                y[:train_rows],
                model.predict(x[:train_rows].astype(np.float32), verbose=0),
                logs["loss"],
                logs.get("val_loss"),
                title=f"{args.target} ~ {', '.join(features)}",
            ),
        )
    for label, path in (("Report", args.report), ("SavedModel", args.export),
                        ("Keras model", args.save), ("Plot", args.plot)):
        if path:
            print(f"{label}: {path}")
    return 0


def _warn_if_not_converged(args, model, x, y) -> None:
    """One line on stderr when the fit ended far from the optimum it trains towards."""
    from keras_linreg.convergence import relative_gap

    _warn_about_gap(args, relative_gap(model, x.astype(np.float32), y.astype(np.float32)))


def _warn_about_gap(args, gap) -> None:
    from keras_linreg.convergence import DEFAULT_TOLERANCE

    tolerance = args.tol or DEFAULT_TOLERANCE
    if gap <= tolerance:
        return
    advice = ["more --epochs"]
    if not args.standardize:
        advice.append("--standardize")
    if args.learning_rate != "auto":
        advice.append("--learning-rate auto")
    print(
        f"keras-linreg train: warning: the fit has not converged: its parameters are "
        f"{gap:.3g} from the least-squares optimum (relative to their scale; tolerance "
        f"{tolerance:g}). Try {', '.join(advice)}.",
        file=sys.stderr,
    )


def predict(args) -> int:
    import_tensorflow_quietly()
    from keras_linreg.export import load_predictor
    from keras_linreg_cli.files import predict_files

    try:
        predict_fn, feature_names = load_predictor(args.model)
    except (OSError, ValueError) as error:
        raise InputError(f"{args.model}: not a model this tool can load ({error})") from None
    names = args.features or feature_names
    if names is None:
        raise InputError(f"{args.model} carries no feature names: pass --features A,B,...")
    predict_files(args.data, list(names), predict_fn, args.output, args.memory_budget)
    return 0
