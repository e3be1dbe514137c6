"""`keras-linreg train --learning-rate A,B,...`: one fit per rate, for TensorBoard's HParams.

Each rate trains in its own run directory `LOG_DIR/lr=<rate>` logged by
`ParameterLogger(..., hparams=...)`; `LOG_DIR` holds the experiment written by
`write_hparams_experiment` (docs/hparams.md). A run that diverges is marked and
the sweep goes on. `parse_learning_rates` and `check_sweep_args` need no
TensorFlow (the argument checks run before it starts); `run_sweep` is called by
`commands.train` once the CSV file is read.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass

__all__ = [
    "SCORE_TIE",
    "SweepRun",
    "best_run",
    "check_sweep_args",
    "format_row",
    "parse_learning_rates",
    "run_name",
    "run_sweep",
]

_SINGLE_MODEL_OPTIONS = ("export", "save", "plot", "report")


def parse_learning_rates(text: str) -> tuple[float, ...] | str:
    """`--learning-rate`'s value: `"auto"`, one rate, or distinct rates separated by
    commas (a sweep), as a tuple.

    Raises:
        argparse.ArgumentTypeError: An item is not a finite number > 0, or two
            items are the same number (`0.1,0.10`); `auto` is not a sweep's item.
    """
    if text.strip().lower() == "auto":
        return "auto"
    expected = (
        "expected auto, a number > 0, or distinct numbers > 0 separated by commas (a sweep)"
    )
    received = f"Received: --learning-rate={text}"
    rates, seen = [], {}
    for item in (part.strip() for part in text.split(",")):
        try:
            value = float(item)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            what = "an empty item" if not item else f"{item!r}"
            raise argparse.ArgumentTypeError(f"{expected}; {what} is not. {received}")
        if value in seen:
            raise argparse.ArgumentTypeError(
                f"{expected}; {item!r} repeats {seen[value]!r}. {received}"
            )
        seen[value] = item
        rates.append(value)
    return tuple(rates)


def check_sweep_args(args, prog: str) -> None:
    """Sets `args.learning_rates` (all rates) and `args.learning_rate` (the first).

    A sweep (several rates) trains several models, so `--export`, `--save` and
    `--plot`, which write one, are refused, as is `--no-log`; and its
    `--log-dir` must be new or empty, since it becomes the sweep's experiment
    directory.

    Raises:
        keras_linreg_cli.UsageError: With the offending option named.
    """
    from keras_linreg_cli import UsageError

    rates = args.learning_rate
    if isinstance(rates, (str, float)):  # "auto", or a default not parsed from the command line
        rates = (rates,)
    args.learning_rates, args.learning_rate = tuple(rates), rates[0]
    if len(rates) == 1:
        return
    given = ",".join(f"{rate:g}" for rate in rates)
    for option in _SINGLE_MODEL_OPTIONS:
        if getattr(args, option, None) is not None:
            raise UsageError(
                f"{prog}: error: --{option} writes one model, but --learning-rate {given} "
                f"trains {len(rates)}; sweep first, then train the rate you pick with --{option}"
            )
    if getattr(args, "no_log", False):
        raise UsageError(
            f"{prog}: error: --no-log leaves a sweep nothing to compare in TensorBoard; "
            f"--learning-rate {given} writes one run per rate under --log-dir"
        )
    if args.log_dir is not None and os.path.exists(args.log_dir):
        if not os.path.isdir(args.log_dir) or os.listdir(args.log_dir):
            raise UsageError(
                f"{prog}: error: --log-dir {args.log_dir} is not an empty directory; a sweep "
                "writes its experiment and one run per rate there, so choose a new one"
            )


def run_name(rate: float) -> str:
    """The run directory of `rate`: `lr=<rate>`, e.g. `lr=0.001` (`repr`: distinct rates
    get distinct names)."""
    return f"lr={rate!r}"


@dataclass
class SweepRun:
    """One rate's outcome, the values written to its HParams session.

    `gap` is `hparams.least_squares_gap` on the training rows: the MSE of the
    final weights minus the least-squares MSE (0 at the optimum). A run that
    diverged keeps the weights the divergence guard restored.
    """

    learning_rate: float
    loss: float
    val_loss: float | None
    gap: float
    epochs: int
    diverged: bool
    max_stable_learning_rate: float | None = None

    @property
    def score(self) -> float:
        """What `best_run` minimises: the final val_loss when validating, else the loss."""
        return self.loss if self.val_loss is None else self.val_loss


#: Scores within this relative distance of the lowest count as equal in `best_run`.
SCORE_TIE = 1e-4


def best_run(runs: list[SweepRun]) -> SweepRun | None:
    """The best of the runs that did not diverge (finite `score`), or None.

    The lowest `score` wins; but scores within `SCORE_TIE` (relative) of the
    lowest are equal (runs that reached the same optimum differ only by float32
    rounding), and of those the run that needed the fewest epochs wins, then
    the smaller `gap`, then the earlier run.
    """
    candidates = [run for run in runs if not run.diverged and math.isfinite(run.score)]
    if not candidates:
        return None
    lowest = min(run.score for run in candidates)
    close = [run for run in candidates if run.score <= lowest + SCORE_TIE * abs(lowest)]
    return min(close, key=lambda run: (run.epochs, run.gap, run.score))


_HEADER = ("learning_rate", "final loss", "val_loss", "MSE gap to LS", "epochs", "diverged")


def format_row(cells) -> str:
    """One line of the sweep's table (fixed width)."""
    widths = (13, 12, 12, 10, 6, 8)
    return "  ".join(f"{cell:>{width}}" for cell, width in zip(cells, widths, strict=True))


def _cells(run: SweepRun):
    return (
        f"{run.learning_rate:g}",
        f"{run.loss:.6g}",
        "-" if run.val_loss is None else f"{run.val_loss:.6g}",
        f"{run.gap:.4g}",
        str(run.epochs),
        "yes" if run.diverged else "no",
    )


def run_sweep(args, x, y, features) -> int:
    """Trains one model per rate of `args.learning_rates`; prints the table as runs end.

    Args:
        args: `train`'s parsed arguments (after `check_sweep_args`).
        x: The feature matrix, `(n, n_features)`, float64.
        y: The target, `(n,)`.
        features: The feature names.

    Returns:
        The exit status: 0, or 1 when every run diverged.
    """
    import numpy as np

    import keras_linreg
    from keras_linreg.callbacks import ParameterLogger, new_run_dir, write_hparams_experiment
    from keras_linreg.hparams import METRICS, least_squares_gap
    from keras_linreg.inputs import split_point
    from keras_linreg_cli import PROG
    from keras_linreg_cli.report import fit_from_arguments

    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    rows = split_point(len(y), args.validation_split)  # the rows Keras trains on
    train_data = (x32[:rows], y32[:rows])
    gap_data = (train_data[0].astype(np.float64), train_data[1].astype(np.float64))
    batch_size = args.batch_size or rows  # what fit_regression trains with
    validating = args.validation_split > 0
    # `--no-intercept` (where the parser has it): the same model, optimum and gap without one.
    no_intercept = {"fit_intercept": False} if getattr(args, "no_intercept", False) else {}
    log_dir = args.log_dir or new_run_dir(os.path.join("logs", "sweep"))
    write_hparams_experiment(
        log_dir,
        {
            "learning_rate": list(args.learning_rates),
            "standardize": [bool(args.standardize)],
            "batch_size": [int(batch_size)],
        },
        metrics=[tag for tag in METRICS if validating or tag != "val_loss"],
    )
    target = "the penalized optimum" if (args.l1 or args.l2) else "least squares"
    until = (
        f", or until the parameters are within --tol {args.tol:g} of {target} (relative "
        "to their scale)" if args.tol else ""
    )
    print(
        f"Sweep of {len(args.learning_rates)} learning rates, at most {args.epochs} epochs "
        f"each{until}; TensorBoard logs: {log_dir}"
    )
    print(format_row(_HEADER), flush=True)
    runs = []
    for rate in args.learning_rates:
        hparams = {
            "learning_rate": rate,
            "standardize": bool(args.standardize),
            "batch_size": int(batch_size),
        }
        logger = ParameterLogger(
            os.path.join(log_dir, run_name(rate)), data=train_data, hparams=hparams
        )
        stable = None
        try:
            _, history = fit_from_arguments(
                args, x32, y32, features, learning_rate=rate, callbacks=[logger], verbose=0
            )
            diverged = False
        except keras_linreg.DivergenceError as error:  # marked; the sweep goes on
            history, diverged, stable = error.history, True, error.max_stable_learning_rate
        logs = history.history
        slope, intercept = logger.model.get_parameters()  # the guard's restored weights
        run = SweepRun(
            learning_rate=rate,
            loss=float(logs["loss"][-1]),
            val_loss=float(logs["val_loss"][-1]) if "val_loss" in logs else None,
            gap=least_squares_gap(slope, intercept, gap_data, **no_intercept),
            epochs=len(logs["loss"]),
            diverged=diverged,
            max_stable_learning_rate=stable,
        )
        runs.append(run)
        print(format_row(_cells(run)), flush=True)

    print()
    best = best_run(runs)
    view = f"tensorboard --logdir {log_dir}   (HPARAMS tab)"
    if best is None:
        print(f"View: {view}")
        limits = [run.max_stable_learning_rate for run in runs if run.max_stable_learning_rate]
        hint = f"; try rates below {min(limits):.3g} (2 / λmax)" if limits else ""
        print(
            f"{PROG} {args.command}: error: every learning rate diverged "
            f"({', '.join(f'{run.learning_rate:g}' for run in runs)}){hint}",
            file=sys.stderr,
        )
        return 1
    criterion = "final val_loss" if best.val_loss is not None else "final loss"
    diverged = [run for run in runs if run.diverged]
    print(
        f"Best: learning_rate={best.learning_rate:g} (lowest {criterion} of the "
        f"{len(runs) - len(diverged)} runs that did not diverge, to {SCORE_TIE:g} relative; "
        "then fewest epochs)"
    )
    print(f"View: {view}")
    return 0
