"""keras_linreg: linear regression as a Keras 3 model trained by plain SGD."""

from keras_linreg._environment import check_environment

check_environment()

from keras_linreg.closed_form import least_squares, max_stable_learning_rate  # noqa: E402
from keras_linreg.divergence import DivergenceError  # noqa: E402
from keras_linreg.learning_rate import LearningRateState  # noqa: E402
from keras_linreg.model import LinearRegression  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "DivergenceError",
    "LearningRateState",
    "LinearRegression",
    "least_squares",
    "max_stable_learning_rate",
]
