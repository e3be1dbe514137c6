"""Prints the correct digits `keras_linreg` reaches on the NIST StRD linear datasets.

Usage: python scripts/nist_digits.py [path/to/nist-strd-linear.json]

The data and certified values live outside the project (../shared/data, or the path
given, or $KERAS_LINREG_NIST_STRD). Digits are McCullough's log relative error (the
fewest over the entries, 15 = every certified digit). Columns: `least_squares` in
memory; `ols` parameters, standard errors, residual SD and R² in memory; `ols` over
batches of 7 rows (one streaming pass); and `numpy.linalg.lstsq` on `[x, 1]`, for
comparison. Prints a Markdown table (docs/statistics.md quotes it).
"""

import json
import os
import sys
from pathlib import Path

import numpy as np

import keras_linreg

NAME = "nist-strd-linear.json"


def _path():
    if len(sys.argv) > 1:
        return Path(sys.argv[1])
    if os.environ.get("KERAS_LINREG_NIST_STRD"):
        return Path(os.environ["KERAS_LINREG_NIST_STRD"])
    return Path(__file__).resolve().parents[2] / "shared" / "data" / NAME


def _digits(estimate, certified):
    estimate = np.atleast_1d(np.asarray(estimate, dtype=np.float64))
    certified = np.atleast_1d(np.asarray(certified, dtype=np.float64))
    error = np.where(
        certified == 0,
        np.abs(estimate),
        np.abs(estimate - certified) / np.where(certified == 0, 1.0, np.abs(certified)),
    )
    with np.errstate(divide="ignore"):
        return float(np.min(np.minimum(-np.log10(error), 15.0)))


def _design(dataset):
    y = np.asarray(dataset["y"], dtype=np.float64)
    x = np.asarray(dataset["x"], dtype=np.float64).reshape(len(y), -1)
    if dataset["model"]["type"] == "polynomial":
        x = np.hstack([x**power for power in range(1, dataset["model"]["degree"] + 1)])
    return x, y, bool(dataset["model"]["intercept"])


def main():
    path = _path()
    if not path.is_file():
        sys.exit(f"NIST StRD data not found at {path}; pass its path as the argument.")
    datasets = json.loads(path.read_text())["datasets"]
    print("| dataset | difficulty | least_squares | ols params | ols bse | ols resid_std "
          "| ols R² | ols streamed params | ols streamed bse | lstsq on [x, 1] |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for dataset in datasets:
        x, y, fit_intercept = _design(dataset)

        def ours(values, intercept_first=fit_intercept):
            values = np.asarray(values, dtype=np.float64)
            return np.r_[values[-1], values[:-1]] if intercept_first else values

        certified = dataset["certified_params"]
        slope, intercept = keras_linreg.least_squares(x, y, fit_intercept=fit_intercept)
        ls = _digits(ours(np.r_[slope, intercept] if fit_intercept else slope), certified)
        result = keras_linreg.ols(x, y, fit_intercept=fit_intercept)
        batches = [(x[i : i + 7], y[i : i + 7]) for i in range(0, len(y), 7)]
        streamed = keras_linreg.ols(batches, fit_intercept=fit_intercept)
        design = np.column_stack([np.ones(len(y)), x]) if fit_intercept else x
        lstsq = np.linalg.lstsq(design, y, rcond=None)[0]
        row = [
            ls,
            _digits(ours(result.params), certified),
            _digits(ours(result.bse), dataset["certified_param_sd"]),
            _digits(result.resid_std, dataset["certified_residual_sd"]),
            _digits(result.rsquared, dataset["certified_r_squared"]),
            _digits(ours(streamed.params), certified),
            _digits(ours(streamed.bse), dataset["certified_param_sd"]),
            _digits(lstsq, certified),
        ]
        print(f"| {dataset['name']} | {dataset['difficulty']} | "
              + " | ".join(f"{v:.1f}" for v in row) + " |")


if __name__ == "__main__":
    main()
