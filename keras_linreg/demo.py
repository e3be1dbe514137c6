"""The tutorial, reproduced: `Y = mX + C` fitted by full-batch gradient descent.

x = linspace(0, 10, 100), y = x + N(0, 1), slope and intercept start at 0,
learning rate 0.01, 100 epochs, one batch per epoch, as in the tutorial this
package grows from. Prints each epoch's loss and the final parameters beside
the least-squares optimum.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np


def tutorial_data(seed: int | None = 0, n: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """The tutorial's data: `x = linspace(0, 10, n)`, `y = x + N(0, 1)`, float32."""
    x = np.linspace(0, 10, n)
    y = x + np.random.default_rng(seed).normal(0, 1, n)
    return x.astype(np.float32), y.astype(np.float32)


@dataclass
class DemoResult:
    """What `run_demo` measured."""

    losses: list[float]
    slope: float
    intercept: float
    optimum_slope: float
    optimum_intercept: float


def run_demo(
    epochs: int = 100, learning_rate: float = 0.01, seed: int | None = 0, verbose: bool = True
) -> DemoResult:
    """Fits the tutorial's data with `LinearRegression` and returns the result."""
    import keras

    import keras_linreg

    x, y = tutorial_data(seed)
    if seed is not None:
        keras.utils.set_random_seed(seed)
    model = keras_linreg.LinearRegression(learning_rate=learning_rate)
    model.compile()
    history = model.fit(x, y, batch_size=len(x), epochs=epochs, shuffle=False, verbose=0)
    losses = [float(v) for v in history.history["loss"]]
    slope, intercept = model.get_parameters()
    optimum_slope, optimum_intercept = keras_linreg.least_squares(x, y)
    result = DemoResult(
        losses, float(slope[0]), intercept, float(optimum_slope[0]), optimum_intercept
    )
    if verbose:
        for epoch, loss in enumerate(losses):
            print(f"Epoch count {epoch}: Loss value: {loss}")
        print(f"slope     {result.slope:.6f}   (least squares {result.optimum_slope:.6f})")
        print(f"intercept {result.intercept:.6f}   (least squares {result.optimum_intercept:.6f})")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--learning-rate", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    run_demo(args.epochs, args.learning_rate, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
