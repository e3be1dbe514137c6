"""Closed-form references for linear regression, in float64 NumPy.

`least_squares` (and `keras_linreg.statistics.ols`, which shares its solver) solve
by Householder QR of the centred, column-scaled design, refined with
extra-precise residuals in memory, or by a streaming R-factor update over
batches; design notes: docs/design/least-squares.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import solve_triangular

from keras_linreg import inputs

__all__ = [
    "hessian_eigenvalues",
    "least_squares",
    "loss_curvature",
    "max_row_curvature",
    "max_stable_learning_rate",
]

# Rows per chunk of the Hessian's accumulation (bounds its float64 temporaries).
_CHUNK_ROWS = 65536
# In-memory problems up to this many design entries are solved with the Q factor
# kept and refined with extra-precise residuals; larger ones stream in chunks.
_REFINE_MAX_ENTRIES = 1 << 22
_REFINE_STEPS = 4
_EPS = float(np.finfo(np.float64).eps)
_SPLIT = 134217729.0  # 2**27 + 1, Dekker's splitter for float64


def least_squares(
    x, y=None, sample_weight=None, *, fit_intercept=True, l2=0.0
) -> tuple[np.ndarray, float]:
    """The (weighted, optionally ridge) least-squares optimum of `y ≈ x · slope + intercept`.

    Minimises, over the slope and the intercept, the objective `LinearRegression`
    trains on (its weighted mean squared error plus Keras' `L2(l2)` penalty):

    ```
    F(slope, b) = Σ w·(x·slope + b − y)² / n + l2·Σ slope²
    ```

    with `n` the number of rows (zero-weight rows count) and `w` the sample
    weights (default 1); the intercept is never penalized, and is 0 with
    `fit_intercept=False`. Solved in float64 without forming `X^T W X`: with an
    intercept, the columns are shifted to their weighted means; the rows are
    scaled by `sqrt(w)`, the columns to unit norm, `sqrt(n·l2)·I` stacked
    under the slope columns for the penalty, and the system solved by
    Householder QR. In memory, the solution is then refined with residuals
    computed in double-double arithmetic on the *original* (unshifted) data,
    which recovers the digits the shift and the solve lose (NIST StRD:
    ≥ 7 digits on Filip, ≥ 13 on Wampler1–5).

    `x` may also be a finite iterable of `(x, y)` or `(x, y, sample_weight)`
    batches (NumPy arrays, tensors, a `tf.data.Dataset`), with `y` omitted:
    it is read once, in O(n_features²) memory, by updating the R factor
    (`R ← qr([R; batch rows])`), centred on the first batch's weighted means.

    Columns whose part not explained by the intercept and the columns before
    them is below `max(n, n_features)·eps` of their norm (a constant feature,
    an exact copy or combination of others, columns beyond the row count)
    are numerically dependent: they get slope 0 and the others are fitted
    without them (a basic solution, as R's `lm` drops such columns). All
    weights 0 gives slope 0 and intercept 0.

    Args:
        x: Array of shape `(n,)` (one feature) or `(n, n_features)`, or an
            iterable of batches (then `y` and `sample_weight` are omitted).
        y: Array of shape `(n,)` or `(n, 1)`.
        sample_weight: Optional non-negative array of shape `(n,)`.
        fit_intercept: If False, the fit goes through the origin.
        l2: The L2 (ridge) coefficient, a finite number ≥ 0.

    Returns:
        `(slope, intercept)`: a float64 array of shape `(n_features,)` and a
        float.
    """
    if not (np.isfinite(l2) and l2 >= 0):
        raise ValueError(
            "Received an invalid value for `l2`, expected a finite number >= 0. "
            f"Received: l2={l2!r}"
        )
    solution = _solve(x, y, sample_weight, fit_intercept=bool(fit_intercept), l2=float(l2))
    return solution.slope, solution.intercept


# ------------------------------------------------------------------ the solver
@dataclass
class _Solution:
    """A solved least-squares problem and what its statistics are computed from.

    The design the QR factor `r` belongs to is `A = sqrt(w)·[1, x − shift_x] / scale`
    (the ones column only with an intercept), restricted to the columns in
    `keep`; its coordinates `u` map to the parameters `θ = (intercept, slope)`
    (internal order) as `θ = transform @ u + (shift_y, 0, …)`.
    """

    slope: np.ndarray
    intercept: float
    fit_intercept: bool
    keep: np.ndarray  # bool, (p,): columns of [1, x] (or x) kept, in internal order
    r: np.ndarray  # (q, q) upper triangular, q = keep.sum()
    transform: np.ndarray  # (p, q)
    shift_x: np.ndarray
    shift_y: float
    scale: np.ndarray  # (p,) column scale of A over all p columns (dropped ones included)
    n_rows: int
    positive_rows: int
    weight_sum: float
    log_weight_sum: float
    ssr: float
    centered_tss: float
    uncentered_tss: float
    q: np.ndarray | None = None  # in memory: A[:, keep] = q @ r, (n, q)
    residual: np.ndarray | None = None  # in memory: sqrt(w)·(y − ŷ), (n,)
    weighted: bool = False  # whether sample weights were given
    feature_names: tuple[str, ...] | None = None

    @property
    def params(self) -> np.ndarray:
        """`θ` in internal order: the intercept first (when fitted), then the slope."""
        if self.fit_intercept:
            return np.concatenate([[self.intercept], self.slope])
        return self.slope.copy()

    def whitened_design(self, x, w):
        """`A[:, keep]` for the rows `x` (weights `w` or None) of the original data."""
        root = np.ones(len(x)) if w is None else np.sqrt(w.astype(np.float64))
        design = root[:, None] * (x.astype(np.float64) - self.shift_x)
        if self.fit_intercept:
            design = np.hstack([root[:, None], design])
        return (design / self.scale)[:, self.keep]

    def whitened_residual(self, x, y, w):
        """`sqrt(w)·(y − ŷ)` for rows of the original data, in the shifted coordinates."""
        root = np.ones(len(x)) if w is None else np.sqrt(w.astype(np.float64))
        shifted = (x.astype(np.float64) - self.shift_x) @ self.slope
        offset = self.intercept - self.shift_y + float(self.shift_x @ self.slope)
        return root * ((y.astype(np.float64) - self.shift_y) - shifted - offset)


def _solve(x, y, sample_weight, *, fit_intercept, l2=0.0, keep_rows=False):
    """Checks the data and solves; returns a `_Solution`.

    `keep_rows` keeps the in-memory Q factor and residuals (for robust
    covariances); iterables never keep rows.
    """
    if inputs.is_batched(x, y):
        if sample_weight is not None:
            raise ValueError(
                "Received `sample_weight` beside an iterable of batches, expected the "
                "weights inside the batches, as `(x, y, sample_weight)` tuples. "
                f"Received: sample_weight={type(sample_weight).__name__}"
            )
        return _solve_batches(inputs.batches(x), fit_intercept=fit_intercept, l2=l2)
    names = inputs.column_names(x)
    x, y, w = inputs.check_arrays(x, y, sample_weight)
    if x.size > _REFINE_MAX_ENTRIES:
        solution = _solve_batches(
            _chunks(x, y, w), fit_intercept=fit_intercept, l2=l2, shift=_weighted_means(x, y, w)
        )
    else:
        solution = _solve_in_memory(x, y, w, fit_intercept=fit_intercept, l2=l2,
                                    keep_rows=keep_rows)
    solution.feature_names = names
    solution.weighted = w is not None
    return solution


def _chunks(x, y, w):
    for start in range(0, len(x), _CHUNK_ROWS):
        stop = start + _CHUNK_ROWS
        yield start, x[start:stop], y[start:stop], None if w is None else w[start:stop], None


def _weighted_means(x, y, w):
    """Weighted means of the columns and the target (plain means when Σw = 0).

    In float64, chunk by chunk (a large float32 `x` is never copied whole), with
    one correction step (the weighted mean of the deviations) that makes them
    exact to rounding.
    """
    use_weights = w is not None and w.sum() > 0

    def weighted_sum(shift_x, shift_y):
        sum_x, sum_y, total = np.zeros(x.shape[1]), 0.0, 0.0
        for start in range(0, len(x), _CHUNK_ROWS):
            rows = x[start : start + _CHUNK_ROWS].astype(np.float64) - shift_x
            targets = y[start : start + _CHUNK_ROWS].astype(np.float64) - shift_y
            if use_weights:
                weights = w[start : start + _CHUNK_ROWS].astype(np.float64)
                sum_x, sum_y = sum_x + weights @ rows, sum_y + float(weights @ targets)
                total += float(weights.sum())
            else:
                sum_x, sum_y = sum_x + rows.sum(axis=0), sum_y + float(targets.sum())
                total += len(rows)
        return sum_x / total, sum_y / total

    x_mean, y_mean = weighted_sum(np.zeros(x.shape[1]), 0.0)
    dx, dy = weighted_sum(x_mean, y_mean)
    return x_mean + dx, y_mean + dy


def _solve_in_memory(x, y, w, *, fit_intercept, l2, keep_rows):
    n, k = x.shape
    x = x.astype(np.float64)
    y = y.astype(np.float64)
    weights = np.ones(n) if w is None else w.astype(np.float64)
    root = np.sqrt(weights)
    weight_sum = float(weights.sum())
    if fit_intercept:
        shift_x, shift_y = _weighted_means(x, y, w)
        design = np.hstack([root[:, None], root[:, None] * (x - shift_x)])
        original = np.hstack([root[:, None], root[:, None] * x])
    else:
        shift_x, shift_y = np.zeros(k), 0.0
        design = root[:, None] * x
        original = design
    target = root * (y - shift_y)
    target_original = root * y
    p = design.shape[1]
    if weight_sum == 0:  # nothing to fit: the documented answer, slope 0 and intercept 0
        uncentered = float(np.sum(weights * y * y))
        return _empty_solution(k, fit_intercept, n, shift_x, shift_y, uncentered)
    scale = np.linalg.norm(design, axis=0)
    scale[scale == 0] = 1.0
    design = design / scale
    if l2:
        penalty = np.zeros((k, p))
        penalty[:, p - k :] = np.sqrt(n * l2) * np.eye(k)
        original = np.vstack([original, penalty])
        design = np.vstack([design, penalty / scale])
        target = np.concatenate([target, np.zeros(k)])
        target_original = np.concatenate([target_original, np.zeros(k)])
    keep = _independent_columns(np.linalg.qr(design, mode="r"), p, n)
    q, r = np.linalg.qr(design[:, keep])
    transform = _transform(shift_x, scale, fit_intercept)[:, keep]
    u = solve_triangular(r, q.T @ target)
    theta = transform @ u
    if fit_intercept:
        theta[0] += shift_y
    residual_hi = target - design[:, keep] @ u
    residual_lo = np.zeros_like(residual_hi)
    theta, residual_hi, residual_lo = _refine(
        original, target_original, q, r, transform, u, theta, residual_hi, residual_lo
    )
    data_residual = (residual_hi + residual_lo)[:n]
    slope = theta[1:] if fit_intercept else theta
    intercept = float(theta[0]) if fit_intercept else 0.0
    centered_tss = float(target[:n] @ target[:n]) if fit_intercept else float("nan")
    with np.errstate(divide="ignore"):
        log_weight_sum = float(np.sum(np.log(weights)))
    return _Solution(
        slope=np.array(slope, dtype=np.float64),
        intercept=intercept,
        fit_intercept=fit_intercept,
        keep=keep,
        r=r,
        transform=transform,
        shift_x=shift_x,
        shift_y=shift_y,
        scale=scale,
        n_rows=n,
        positive_rows=int(np.count_nonzero(weights)),
        weight_sum=weight_sum,
        log_weight_sum=log_weight_sum,
        ssr=float(residual_hi[:n] @ residual_hi[:n] + 2.0 * residual_hi[:n] @ residual_lo[:n]),
        centered_tss=centered_tss,
        uncentered_tss=float(np.sum(weights * y * y)),
        q=q[:n] if keep_rows else None,
        residual=data_residual if keep_rows else None,
    )


def _empty_solution(k, fit_intercept, n, shift_x, shift_y, uncentered):
    """All weights 0: no column is identified; slope 0 and intercept 0."""
    p = k + int(fit_intercept)
    return _Solution(
        slope=np.zeros(k),
        intercept=0.0,
        fit_intercept=fit_intercept,
        keep=np.zeros(p, dtype=bool),
        r=np.zeros((0, 0)),
        transform=np.zeros((p, 0)),
        shift_x=np.asarray(shift_x, dtype=np.float64),
        shift_y=float(shift_y),
        scale=np.ones(p),
        n_rows=n,
        positive_rows=0,
        weight_sum=0.0,
        log_weight_sum=float("-inf"),
        ssr=uncentered,
        centered_tss=float("nan"),
        uncentered_tss=uncentered,
    )


def _transform(shift_x, scale, fit_intercept):
    """The map from the scaled, shifted coordinates `u` to `θ` (minus the `shift_y` offset).

    `slope_j = u_j / scale_j`; the intercept is `u_0 / scale_0 − shift_x · slope`.
    """
    transform = np.diag(1.0 / scale)
    if fit_intercept:
        transform[0, 1:] = -shift_x / scale[1:]
    return transform


def _independent_columns(r, p, n):
    """Which of the `p` columns of the factored design are numerically independent.

    `r` is an R factor (possibly with fewer rows than `p`, or with extra columns
    after the first `p`, e.g. the target). Column `j` is dependent when the part
    of it not explained by the kept columns before it, `|R_jj|`, is below
    `max(n, p)·eps` of its norm; dependent columns are dropped one at a time
    (the first one found), re-factoring the rest, so later columns are judged
    against the kept ones only.
    """
    tol = max(n, p) * _EPS
    square = np.zeros((max(r.shape[0], p), r.shape[1]))
    square[: r.shape[0]] = r
    r = square[:, :p]
    keep = np.ones(p, dtype=bool)
    while True:
        columns = np.flatnonzero(keep)
        factor = np.zeros((len(columns), len(columns)))
        reduced = np.linalg.qr(r[:, columns], mode="r")
        factor[: reduced.shape[0]] = reduced
        norms = np.linalg.norm(r[:, columns], axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(norms > 0, np.abs(np.diag(factor)) / norms, 0.0)
        bad = np.flatnonzero(ratio <= tol)
        if not bad.size:
            return keep
        keep[columns[bad[0]]] = False
        if not keep.any():
            return keep


# ------------------------------------------- refinement with extra-precise residuals
def _two_sum(a, b):
    """`a + b` as `(s, e)` with `s + e` exact (Knuth's TwoSum)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _split(a):
    c = _SPLIT * a
    high = c - (c - a)
    return high, a - high


def _two_product(a, b, a_split=None):
    """`a · b` as `(p, e)` with `p + e` exact (Dekker's TwoProduct); `a_split` = `_split(a)`."""
    p = a * b
    a_hi, a_lo = _split(a) if a_split is None else a_split
    b_hi, b_lo = _split(b)
    return p, ((a_hi * b_hi - p) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo


def _refine(design, target, q, r, transform, u, theta, residual_hi, residual_lo):
    """Iterative refinement of the augmented system `[I A; Aᵀ 0] [r; θ] = [b; 0]`.

    Björck's refinement of a least-squares solution: the residuals of both
    equations, `f = b − r − Aθ` and `g = −Aᵀr`, are computed in double-double
    arithmetic on the *original* design `A` (unshifted, unscaled), and the
    corrections solved with the QR factors `q`, `r` of the shifted, scaled
    design `A·transform`. Its fixed point is the exact least-squares solution
    of the float64 data; it converges at the rate `eps·cond(A·transform)`
    (one or two steps). A step that does not shrink the correction ends it.
    """
    previous = np.inf
    design_split = _split(design)  # once: every product below reuses it
    for _ in range(_REFINE_STEPS):
        f = _residual_f(design, design_split, target, residual_hi, residual_lo, theta)
        g = transform.T @ _residual_g(design, design_split, residual_hi, residual_lo)
        f1 = q.T @ f
        h1 = solve_triangular(r, g, trans="T")
        du = solve_triangular(r, f1 - h1)
        size = float(np.linalg.norm(du))
        if not np.isfinite(size) or size >= previous:
            break
        u = u + du
        theta = theta + transform @ du
        residual_hi, error = _two_sum(residual_hi, f + q @ (h1 - f1))
        residual_lo = residual_lo + error
        previous = size
        if size <= _EPS * float(np.linalg.norm(u)):
            break
    return theta, residual_hi, residual_lo


def _residual_f(design, design_split, target, residual_hi, residual_lo, theta):
    """`target − residual − design @ theta`, in double-double, rounded to float64."""
    s = target.copy()
    e = np.zeros_like(s)
    for term in (-residual_hi, -residual_lo):
        s, error = _two_sum(s, term)
        e += error
    for j in range(design.shape[1]):
        if theta[j] == 0.0:
            continue
        column_split = (design_split[0][:, j], design_split[1][:, j])
        product, product_error = _two_product(design[:, j], theta[j], column_split)
        s, error = _two_sum(s, -product)
        e += error - product_error
    return s + e


def _residual_g(design, design_split, residual_hi, residual_lo):
    """`−designᵀ @ residual`, in double-double (a pairwise compensated column sum)."""
    s, e = _two_product(design, residual_hi[:, None], design_split)
    e = e + design * residual_lo[:, None]
    while len(s) > 1:
        if len(s) % 2:
            s = np.vstack([s, np.zeros((1, s.shape[1]))])
            e = np.vstack([e, np.zeros((1, e.shape[1]))])
        half = len(s) // 2
        s, error = _two_sum(s[:half], s[half:])
        e = e[:half] + e[half:] + error
    return -(s[0] + e[0])


# ------------------------------------------------------------------- streaming
def _solve_batches(batches, *, fit_intercept, l2, shift=None):
    """One pass over `(index, x, y, w, names)` batches: the R factor of `[A | b]`.

    Centring in one pass: the columns are shifted by `shift`, or by the first
    batch's weighted means, and the intercept's ones column kept in the QR, so
    any mean the shift misses is still removed exactly by the orthogonal
    solve; the shift only has to be close to the data's centre, not exact.
    The column scale is the first batch's column norms (to keep magnitudes
    near 1); the final R's own column norms (the whole design's) then rescale
    it exactly before the rank decision and the solve.
    """
    factor = None
    n = positive = 0
    weight_sum = log_weight_sum = uncentered = 0.0
    names = None
    weighted = False
    for _index, x, y, w, batch_names in batches:
        weighted = weighted or w is not None
        x = x.astype(np.float64)
        y = y.astype(np.float64)
        weights = np.ones(len(x)) if w is None else w.astype(np.float64)
        root = np.sqrt(weights)
        if factor is None:
            names = batch_names
            k = x.shape[1]
            if not fit_intercept:
                shift_x, shift_y = np.zeros(k), 0.0
            elif shift is not None:
                shift_x, shift_y = shift
            else:
                shift_x, shift_y = _weighted_means(x, y, w)
            p = k + int(fit_intercept)
            factor = np.zeros((0, p + 1))
        design = root[:, None] * (x - shift_x)
        if fit_intercept:
            design = np.hstack([root[:, None], design])
        if n == 0:  # the first batch's column norms: magnitudes near 1 from here on
            scale = np.linalg.norm(design, axis=0)
            scale[scale == 0] = 1.0
        rows = np.hstack([design / scale, (root * (y - shift_y))[:, None]])
        factor = np.linalg.qr(np.vstack([factor, rows]), mode="r")
        n += len(x)
        positive += int(np.count_nonzero(weights))
        weight_sum += float(weights.sum())
        with np.errstate(divide="ignore"):
            log_weight_sum += float(np.sum(np.log(weights)))
        uncentered += float(np.sum(weights * y * y))
    if weight_sum == 0:
        return _empty_solution(k, fit_intercept, n, shift_x, shift_y, uncentered)
    if l2:
        penalty = np.zeros((k, p + 1))
        penalty[:, p - k : p] = np.sqrt(n * l2) * np.eye(k) / scale[p - k :]
        factor = np.linalg.qr(np.vstack([factor, penalty]), mode="r")
    square = np.zeros((p + 1, p + 1))
    square[: factor.shape[0]] = factor
    factor = square
    # Rescale to the whole design's unit column norms.
    norms = np.linalg.norm(factor[:, :p], axis=0)
    norms[norms == 0] = 1.0
    factor[:, :p] /= norms
    scale = scale * norms
    keep = _independent_columns(factor, p, n)
    columns = np.r_[np.flatnonzero(keep), p]
    reduced = np.linalg.qr(factor[:, columns], mode="r")
    q_ = int(keep.sum())
    full = np.zeros((q_ + 1, q_ + 1))
    full[: reduced.shape[0]] = reduced
    r = full[:q_, :q_]
    qty = full[:q_, q_]
    transform = _transform(shift_x, scale, fit_intercept)[:, keep]
    u = solve_triangular(r, qty) if q_ else np.zeros(0)
    theta = transform @ u
    if fit_intercept:
        theta[0] += shift_y
        centered_tss = float(np.sum(factor[1:, p] ** 2))
    else:
        centered_tss = float("nan")  # not used without an intercept
    slope = theta[1:] if fit_intercept else theta
    intercept = float(theta[0]) if fit_intercept else 0.0
    solution = _Solution(
        slope=np.array(slope, dtype=np.float64),
        intercept=intercept,
        fit_intercept=fit_intercept,
        keep=keep,
        r=r,
        transform=transform,
        shift_x=np.asarray(shift_x, dtype=np.float64),
        shift_y=float(shift_y),
        scale=scale,
        n_rows=n,
        positive_rows=positive,
        weight_sum=weight_sum,
        log_weight_sum=log_weight_sum,
        ssr=float(full[q_, q_] ** 2),
        centered_tss=centered_tss,
        uncentered_tss=uncentered,
    )
    solution.feature_names = names
    solution.weighted = weighted
    return solution


def max_stable_learning_rate(
    x, sample_weight=None, *, design=None, l2=0.0, fit_intercept=True
) -> float:
    """The largest learning rate at which full-batch gradient descent converges.

    `LinearRegression` minimises, over `theta = (slope, intercept)`,

    ```
    loss(theta) = sum(w * (X theta - y) ** 2) / n,    X = [x, 1],  W = diag(w)
    ```

    a quadratic with the constant Hessian `H = (2 / n) X^T W X` (`2·E[w [x,1][x,1]^T]`
    for unit weights). One full-batch step `theta <- theta - lr * grad` multiplies
    the error `theta - theta*` along each eigenvector of `H` (eigenvalue `lambda`)
    by `1 - lr * lambda`, so it converges, and the loss decreases at every step,
    exactly when `|1 - lr * lambda| < 1` for every eigenvalue, that is when

    ```
    lr < 2 / lambda_max(H)
    ```

    and diverges (the error along the top eigenvector grows by
    `|1 - lr * lambda_max| > 1` per step) above it. This function returns
    `2 / lambda_max(H)`, from `hessian_eigenvalues` (float64, in chunks of rows).
    Half of it, `1 / lambda_max`, is a safe choice. Mini-batch SGD sees one batch's
    Hessian per step, so its stable rate is usually somewhat lower.

    For the tutorial's data (`x = linspace(0, 10, 100)`) it is about 0.0292.

    Args:
        x: Array of shape `(n,)` (one feature) or `(n, n_features)`, the
            features the model is trained on; or a finite iterable of
            `(x, y[, sample_weight])` batches (a `tf.data.Dataset`, a
            `dataset_from_files` dataset, a generator), read once (see
            `hessian_eigenvalues`).
        sample_weight: Optional non-negative array of shape `(n,)` (omitted
            with batches, which carry their weights).
        design: Optional function of a chunk of rows of `x` returning the
            prediction's Jacobian in the trainable weights, for a model that
            transforms its features first (see `hessian_eigenvalues`).
        l2: The coefficient of an L2 slope penalty `l2 · Σ slope²`, whose
            curvature `2·l2` joins the slope block of `H`.
        fit_intercept: If False (a `LinearRegression(fit_intercept=False)`),
            `X = x` without the column of ones. Ignored when `design` is given.

    Returns:
        A float > 0 (`inf` when `H` is zero, e.g. all weights zero).
    """
    eigenvalues = hessian_eigenvalues(
        x, sample_weight, design=design, l2=l2, fit_intercept=fit_intercept
    )
    largest = float(eigenvalues[-1])
    if largest <= 0:
        return float("inf")
    return 2.0 / largest


def hessian_eigenvalues(
    x, sample_weight=None, *, design=None, l2=0.0, fit_intercept=True
) -> np.ndarray:
    """Eigenvalues (ascending) of the loss's Hessian `H = (2 / n) Z^T W Z`, in float64.

    `Z` is the Jacobian of the prediction in the trainable weights, `[x, 1]` for
    `y = x · slope + intercept` (the prediction is affine in the weights, so `Z` and
    `H` are constant). `Z^T W Z` is accumulated over chunks of rows, so a large
    float32 `x` is never copied whole to float64.

    `x` may also be a finite iterable of `(x, y)` or `(x, y, sample_weight)`
    batches (a `tf.data.Dataset`, a `keras_linreg.data.dataset_from_files`
    dataset, a generator; not a list, which reads as rows), read once:
    `Z^T W Z = Σ_batches Z_b^T W_b Z_b` and `n = Σ n_b`, with `design` applied
    to each batch's rows, in O(p²) memory. `y` is not used.

    Args:
        x: Features, `(n,)` or `(n, n_features)`, or an iterable of batches.
        sample_weight: Optional non-negative array of shape `(n,)`; with
            batches, omitted (the weights are the batches' third entries).
        design: Optional function mapping a chunk of rows of `x` (shape `(m, k)`)
            to its rows of `Z` (shape `(m, p)`). Defaults to `[x, 1]`.
        l2: An L2 slope penalty's coefficient: `H` gains `2·l2` on the diagonal
            of its first `n_features` entries (the slope's; `Z`'s columns start
            with the slope's).
        fit_intercept: If False, the default `Z` is `x` alone (no column of
            ones). Ignored when `design` is given.

    Returns:
        A float64 array of the `p` eigenvalues, ascending.
    """
    return loss_curvature(
        x, sample_weight, design=design, l2=l2, fit_intercept=fit_intercept
    )[0]


def max_row_curvature(
    x, sample_weight=None, *, design=None, l2=0.0, fit_intercept=True
) -> float:
    """The largest curvature of any single row's loss, `max_i 2·w_i·|z_i|² + 2·l2`.

    Row `i` alone has the loss `w_i (z_i · theta - y_i)² + l2·|slope|²`, whose
    Hessian `2 w_i z_i z_i^T + 2·l2·I_slope` has this as its largest eigenvalue
    (up to `2·l2`, an upper bound). It bounds how sharp a mini-batch's loss can be,
    which the full-batch Hessian does not see (`learning_rate.auto_learning_rate`).
    Arguments as for `hessian_eigenvalues` (an iterable of batches too).

    Returns:
        A float >= 0.
    """
    return loss_curvature(
        x, sample_weight, design=design, l2=l2, fit_intercept=fit_intercept
    )[1]


def loss_curvature(x, sample_weight=None, *, design=None, l2=0.0, fit_intercept=True):
    """`hessian_eigenvalues`, `max_row_curvature` and the row count, in one pass.

    Arguments as for `hessian_eigenvalues`: arrays, or a finite iterable of
    `(x, y[, sample_weight])` batches read once (`learning_rate="auto"` on a
    `dataset_from_files` dataset reads its files once for both).

    Returns:
        `(eigenvalues, row_curvature, n)`: the float64 eigenvalues of
        `H = (2 / n) Z^T W Z` (+ `2·l2` on the slope), ascending;
        `max_i 2·w_i·|z_i|² + 2·l2`; and the number of rows `n`.
    """
    if _is_batches(x):
        if sample_weight is not None:
            raise ValueError(
                "Received `sample_weight` beside an iterable of batches, expected the "
                "weights inside the batches, as `(x, y, sample_weight)` tuples. "
                f"Received: sample_weight={type(sample_weight).__name__}"
            )
        chunks = (
            chunk
            for _, rows, _, weights, _ in inputs.batches(x)
            for chunk in _jacobian_chunks(rows, weights, design, fit_intercept)
        )
    else:
        x, _, sample_weight = inputs.check_arrays(x, None, sample_weight, require_y=False)
        chunks = _jacobian_chunks(x, sample_weight, design, fit_intercept)
    gram, largest, n, k = 0.0, 0.0, 0, None
    for z, w, rows in chunks:
        gram = gram + z.T @ (z if w is None else z * w[:, None])
        norms = np.einsum("ij,ij->i", z, z)
        if w is not None:
            norms = norms * w
        if norms.size:
            largest = max(largest, float(norms.max()))
        n, k = n + len(z), rows.shape[1] if rows.ndim == 2 else 1
    hessian = (2.0 / n) * gram  # n > 0: empty data is refused
    if l2:
        hessian[np.arange(k), np.arange(k)] += 2.0 * l2
    return np.linalg.eigvalsh(hessian), 2.0 * largest + 2.0 * float(l2), n


def _is_batches(x):
    """Whether the curvature functions' `x` is an iterable of batches (not rows)."""
    return inputs.is_batched(x) and not inputs.is_in_memory(x)


def _jacobian_chunks(x, sample_weight, design, fit_intercept):
    """`(z, w, rows)` per chunk of rows: the rows of `Z` in float64, their weights
    (or None), and the chunk of `x`."""
    for start in range(0, len(x), _CHUNK_ROWS):
        rows = x[start : start + _CHUNK_ROWS]
        if design is None and not fit_intercept:
            z = rows.astype(np.float64)
        elif design is None:
            z = np.hstack([rows.astype(np.float64), np.ones((len(rows), 1))])
        else:
            z = np.asarray(design(rows), dtype=np.float64)
        z = z.reshape(len(rows), -1)
        w = None
        if sample_weight is not None:
            w = sample_weight[start : start + _CHUNK_ROWS].astype(np.float64)
        yield z, w, rows
