"""Refuses the environments this package cannot work in, with a clear message.

`LinearRegression` trains with `tf.GradientTape`, so it needs Keras 3 on the
TensorFlow backend.
"""

from __future__ import annotations

import os

_TRUE = ("1", "true", "yes")


def check_environment() -> None:
    """Raises ImportError for Keras 2 (`TF_USE_LEGACY_KERAS`) or another backend."""
    if os.environ.get("TF_USE_LEGACY_KERAS", "").strip().lower() in _TRUE:
        raise ImportError(
            "keras_linreg needs Keras 3, but TF_USE_LEGACY_KERAS="
            f"{os.environ['TF_USE_LEGACY_KERAS']!r} asks TensorFlow for Keras 2 "
            "(tf_keras). Unset TF_USE_LEGACY_KERAS."
        )
    # Checked before importing Keras too: another backend may not even import.
    requested = os.environ.get("KERAS_BACKEND")
    if requested and requested != "tensorflow":
        raise _backend_error(requested)
    import keras

    if not keras.__version__.startswith("3."):
        raise ImportError(
            f"keras_linreg needs Keras 3. Received: keras.__version__={keras.__version__}"
        )
    if keras.backend.backend() != "tensorflow":  # e.g. from ~/.keras/keras.json
        raise _backend_error(keras.backend.backend())


def _backend_error(backend: str) -> ImportError:
    return ImportError(
        "keras_linreg trains with tf.GradientTape and needs the TensorFlow "
        f"backend of Keras. Received: KERAS_BACKEND={backend!r}; set "
        "KERAS_BACKEND=tensorflow before importing keras."
    )
