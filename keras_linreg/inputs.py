"""In-memory inputs: recognising, converting and checking them, in one place.

Every entry point (`fit`, `evaluate`, `predict`, the fast path, standardization,
the least-squares references, the reports and the command line) checks and cuts
its data through this module, so a rule is written once.
"""

from __future__ import annotations

import math


def split_point(n: int, validation_split: float) -> int:
    """The number of training rows Keras keeps for `validation_split`.

    Keras' `fit` trains on the first `floor(n · (1 - validation_split))` rows
    and validates on the rest (taken before any shuffling). Everything that
    reports on "the training rows" must cut at the same place.

    Args:
        n: Number of rows.
        validation_split: The fraction in `[0, 1)` held out for validation.

    Returns:
        The index of the first validation row (`n` when `validation_split` is 0).
    """
    if not validation_split:
        return n
    return int(math.floor(n * (1.0 - validation_split)))
