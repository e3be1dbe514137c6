"""The NIST StRD linear least-squares datasets, read from `../shared/data` (never copied here).

`KERAS_LINREG_NIST_STRD` may name the JSON file; otherwise it is looked for beside
the checkout, `<checkout>/../shared/data/nist-strd-linear.json`. Tests skip, naming
the paths tried, when it is absent (CI may clone the project without ../shared).
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest

FILE_NAME = "nist-strd-linear.json"


def candidates():
    paths = []
    if os.environ.get("KERAS_LINREG_NIST_STRD"):
        paths.append(Path(os.environ["KERAS_LINREG_NIST_STRD"]))
    paths.append(Path(__file__).resolve().parents[2] / "shared" / "data" / FILE_NAME)
    return paths


def load_or_skip():
    """`{name: dataset}` of the StRD file, or `pytest.skip` saying where it was looked for."""
    for path in candidates():
        if path.is_file():
            return {d["name"]: d for d in json.loads(path.read_text())["datasets"]}
    pytest.skip(
        "NIST StRD reference data not found (it lives outside the project, in "
        f"../shared/data/{FILE_NAME}; set KERAS_LINREG_NIST_STRD to its path). Tried: "
        + ", ".join(str(p) for p in candidates())
    )


def design(dataset):
    """`(x, y, fit_intercept)`: the certified model's predictors as columns."""
    y = np.asarray(dataset["y"], dtype=np.float64)
    x = np.asarray(dataset["x"], dtype=np.float64).reshape(len(y), -1)
    if dataset["model"]["type"] == "polynomial":
        x = np.hstack([x**power for power in range(1, dataset["model"]["degree"] + 1)])
    return x, y, bool(dataset["model"]["intercept"])


def certified_in_our_order(dataset, key):
    """Certified values in this package's order: slope entries B1.., then B0 (if any)."""
    values = np.asarray(dataset[key], dtype=np.float64)
    return np.r_[values[1:], values[0]] if dataset["model"]["intercept"] else values


def digits(estimate, certified, cap=15):
    """McCullough's log relative error, the fewest correct digits over the entries.

    `-log10(|estimate - certified| / |certified|)`, or `-log10(|estimate|)` (log absolute
    error) where the certified value is 0, capped at `cap`.
    """
    estimate = np.atleast_1d(np.asarray(estimate, dtype=np.float64))
    certified = np.atleast_1d(np.asarray(certified, dtype=np.float64))
    error = np.where(
        certified == 0,
        np.abs(estimate),
        np.abs(estimate - certified) / np.where(certified == 0, 1.0, np.abs(certified)),
    )
    with np.errstate(divide="ignore"):
        lre = -np.log10(error)
    return float(np.min(np.minimum(lre, cap)))
