"""keras_linreg: linear regression as a Keras 3 model trained by plain SGD."""

import importlib.metadata

from keras_linreg._environment import check_environment

check_environment()

from keras_linreg import data  # noqa: E402, F401  (keras_linreg.data.dataset_from_files)
from keras_linreg.callbacks import ParameterLogger  # noqa: E402
from keras_linreg.closed_form import least_squares, max_stable_learning_rate  # noqa: E402
from keras_linreg.convergence import (  # noqa: E402
    ConvergenceStopping,
    ConvergenceWarning,
    check_convergence,
    epochs_to_optimum,
)
from keras_linreg.divergence import DivergenceError  # noqa: E402
from keras_linreg.export import export_saved_model, load_predictor, save_model  # noqa: E402
from keras_linreg.learning_rate import LearningRateState  # noqa: E402
from keras_linreg.model import LinearRegression  # noqa: E402
from keras_linreg.onnx_export import export_onnx  # noqa: E402
from keras_linreg.statistics import OLSResult, ols  # noqa: E402

try:  # The one place the version is written down is pyproject.toml.
    __version__ = importlib.metadata.version("keras_linreg")
except importlib.metadata.PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "ConvergenceStopping",
    "ConvergenceWarning",
    "DivergenceError",
    "LearningRateState",
    "LinearRegression",
    "OLSResult",
    "ParameterLogger",
    "check_convergence",
    "epochs_to_optimum",
    "export_onnx",
    "export_saved_model",
    "least_squares",
    "load_predictor",
    "max_stable_learning_rate",
    "ols",
    "save_model",
]
