"""A learning-rate sweep of the tutorial's model for TensorBoard's HParams dashboard.

One run per learning rate under `--parent` (default `logs/sweep-demo`), each
logged by `ParameterLogger(..., hparams=...)`, plus the experiment written by
`write_hparams_experiment`. The largest default rate is above the stable
limit 2 / lambda_max (about 0.029 here): the divergence guard stops that run,
and the sweep goes on. Run from the repository root, then view it:

    .venv/bin/python scripts/hparams_sweep_demo.py
    .venv/bin/tensorboard --logdir logs/sweep-demo --host 127.0.0.1   # HPARAMS tab
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

RATES = (0.001, 0.003, 0.01, 0.02, 0.05)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parent", default=os.path.join("logs", "sweep-demo"))
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument(
        "--learning-rates", default=",".join(f"{rate:g}" for rate in RATES), metavar="A,B,..."
    )
    args = parser.parse_args(argv)
    rates = [float(rate) for rate in args.learning_rates.split(",")]
    if os.path.exists(args.parent) and os.listdir(args.parent):
        parser.error(f"--parent {args.parent} is not empty; choose a new directory")

    import keras_linreg
    from keras_linreg.callbacks import ParameterLogger, write_hparams_experiment
    from keras_linreg_cli.demo import tutorial_data

    x, y = tutorial_data(seed=0)
    validation_split = 0.2
    n_train = int(len(x) * (1 - validation_split))  # Keras validates on the last rows
    write_hparams_experiment(
        args.parent, {"learning_rate": rates, "standardize": [False], "batch_size": [n_train]}
    )
    for rate in rates:
        run_dir = os.path.join(args.parent, f"lr-{rate:g}")
        model = keras_linreg.LinearRegression(learning_rate=rate)
        model.compile()
        hparams = {"learning_rate": rate, "standardize": False, "batch_size": n_train}
        logger = ParameterLogger(run_dir, data=(x[:n_train], y[:n_train]), hparams=hparams)
        try:
            history = model.fit(
                x,
                y,
                batch_size=n_train,
                epochs=args.epochs,
                shuffle=False,
                verbose=0,
                validation_split=validation_split,
                callbacks=[logger],
            ).history
            outcome = f"loss {history['loss'][-1]:.6g}"
        except keras_linreg.DivergenceError as error:
            outcome = f"diverged after {len(error.history.history['loss'])} epochs"
        print(f"learning_rate={rate:<6g} {outcome}")
    print(f"view with: .venv/bin/tensorboard --logdir {args.parent} --host 127.0.0.1")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
