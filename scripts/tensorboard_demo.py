"""Trains the tutorial's model with ParameterLogger into a fresh `logs/demo/run-<timestamp>`.

Run from the repository root, then view the run:

    .venv/bin/python scripts/tensorboard_demo.py
    .venv/bin/tensorboard --logdir logs/demo --host 127.0.0.1
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parent", default=os.path.join("logs", "demo"))
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--learning-rate", type=float, default=0.01)
    parser.add_argument("--image-every", type=int, default=10)
    args = parser.parse_args(argv)

    import keras_linreg
    from keras_linreg.callbacks import new_run_dir
    from keras_linreg_cli.demo import tutorial_data

    x, y = tutorial_data(seed=0)
    log_dir = new_run_dir(args.parent)
    model = keras_linreg.LinearRegression(learning_rate=args.learning_rate)
    model.compile()
    logger = keras_linreg.ParameterLogger(log_dir, data=(x, y), image_every=args.image_every)
    model.fit(
        x, y, batch_size=len(x), epochs=args.epochs, shuffle=False, verbose=0, callbacks=[logger]
    )
    slope, intercept = model.get_parameters()
    print(f"slope {slope[0]:.6f}  intercept {intercept:.6f}")
    print(f"logged to {log_dir}; view with:")
    print(f".venv/bin/tensorboard --logdir {args.parent} --host 127.0.0.1")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
