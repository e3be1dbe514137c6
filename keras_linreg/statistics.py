"""Regression statistics with statsmodels' names: `ols` and its `OLSResult`.

Standard errors, t and F tests, confidence intervals, R², the log-likelihood and
information criteria of the (weighted) least-squares fit, from the same float64
QR solver as `least_squares`, on arrays, pandas objects or batches read in one
pass. Every quantity follows statsmodels' definition; guide: docs/statistics.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats
from scipy.linalg import solve_triangular

from keras_linreg import closed_form, inputs

__all__ = ["COV_TYPES", "OLSResult", "ols"]

COV_TYPES = ("nonrobust", "HC0", "HC1", "HC2", "HC3")


@dataclass(frozen=True)
class OLSResult:
    """The statistics of a least-squares fit, named as in statsmodels' `RegressionResults`.

    Parameters are ordered slope entries first, then the intercept (when fitted),
    `param_names` naming them. With `p` parameters, `n = nobs` rows, whitened
    residuals `e = sqrt(w)·(y − ŷ)`, `SSR = Σ e²` and the whitened design `X`:

    - `cov_params()`: `SSR/df_resid · (XᵀX)⁻¹` ("nonrobust"), or the sandwich
      `(XᵀX)⁻¹ Xᵀ diag(ω) X (XᵀX)⁻¹` with `ω = e²` (HC0), `e²·n/df_resid` (HC1),
      `e²/(1−h)` (HC2), `e²/(1−h)²` (HC3), `h` the leverages `diag(X(XᵀX)⁻¹Xᵀ)`.
    - `bse = sqrt(diag(cov))`, `tvalues = params / bse`; `pvalues` and
      `conf_int` from Student's t with `df_resid` degrees of freedom
      ("nonrobust", `use_t` True) or the normal distribution (HC*).
    - `rsquared = 1 − SSR/TSS` with `TSS = Σ w (y − ȳ_w)²` (an intercept) or
      `Σ w y²` (none: uncentered); `rsquared_adj = 1 − (n − k_constant)/df_resid · (1 − R²)`.
    - `fvalue`: `(ESS/df_model)/(SSR/df_resid)`, `ESS = TSS − SSR` ("nonrobust"),
      or the Wald statistic `β_s ᵀ V_s⁻¹ β_s / df_model` on the slopes (HC*);
      `f_pvalue` from `F(df_model, df_resid)`.
    - `llf = −n/2·(log(2π·SSR/n) + 1) + ½·Σ log w`, `aic = −2 llf + 2p`,
      `bic = −2 llf + log(n)·p`; `resid_std = sqrt(SSR/df_resid)`.
    - `nobs` counts every row, zero-weight rows included; `df_model = p − k_constant`,
      `df_resid = nobs − p`.
    """

    params: np.ndarray
    bse: np.ndarray
    tvalues: np.ndarray
    pvalues: np.ndarray
    rsquared: float
    rsquared_adj: float
    fvalue: float
    f_pvalue: float
    resid_std: float
    nobs: int
    df_model: int
    df_resid: int
    llf: float
    aic: float
    bic: float
    ssr: float
    ess: float
    centered_tss: float
    uncentered_tss: float
    feature_names: tuple[str, ...]
    fit_intercept: bool
    weighted: bool
    cov_type: str
    use_t: bool
    _cov: np.ndarray = field(repr=False)

    @property
    def slope(self) -> np.ndarray:
        """The slope entries of `params`, shape `(n_features,)`."""
        return self.params[: len(self.feature_names)]

    @property
    def intercept(self) -> float:
        """The intercept (0.0 when not fitted)."""
        return float(self.params[-1]) if self.fit_intercept else 0.0

    @property
    def param_names(self) -> tuple[str, ...]:
        """The names of `params`: the feature names, then "intercept" when fitted."""
        return self.feature_names + (("intercept",) if self.fit_intercept else ())

    @property
    def scale(self) -> float:
        """`SSR / df_resid`, the residual variance (statsmodels' `scale`)."""
        return self.resid_std**2

    @property
    def k_constant(self) -> int:
        """1 with an intercept, else 0."""
        return int(self.fit_intercept)

    def cov_params(self) -> np.ndarray:
        """The parameters' covariance matrix, `(n_params, n_params)`, of `cov_type`."""
        return self._cov.copy()

    def conf_int(self, alpha: float = 0.05) -> np.ndarray:
        """The `1 − alpha` confidence intervals, shape `(n_params, 2)` (lower, upper).

        `params ± q·bse`, `q` the `1 − alpha/2` quantile of Student's t with
        `df_resid` degrees of freedom ("nonrobust") or of the normal distribution
        (HC*), as statsmodels.
        """
        if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
            raise ValueError(
                "Received an invalid value for `alpha`, expected a number in (0, 1). "
                f"Received: alpha={alpha!r}"
            )
        quantile = _quantile(1 - alpha / 2, self.use_t, self.df_resid)
        return np.column_stack([self.params - quantile * self.bse,
                                self.params + quantile * self.bse])

    def summary(self) -> str:
        """A readable table of the fit, laid out like statsmodels' `summary()`."""
        stat = "t" if self.use_t else "z"
        names = self.param_names
        name_width = max(10, *(len(name) for name in names))
        width = max(78, name_width + 6 * 12)
        left = [
            ("Model:", "WLS" if self.weighted else "OLS"),
            ("Covariance type:", self.cov_type),
            ("No. observations:", str(self.nobs)),
            ("Df residuals:", str(self.df_resid)),
            ("Df model:", str(self.df_model)),
            ("Residual std:", _g(self.resid_std)),
            ("Intercept:", "fitted" if self.fit_intercept else "none"),
        ]
        right = [
            ("R-squared:" if self.fit_intercept else "R-squared (uncentered):",
             _g(self.rsquared)),
            ("Adj. R-squared:", _g(self.rsquared_adj)),
            ("F-statistic:", _g(self.fvalue)),
            ("Prob (F-statistic):", _g(self.f_pvalue)),
            ("Log-likelihood:", _g(self.llf)),
            ("AIC:", _g(self.aic)),
            ("BIC:", _g(self.bic)),
        ]
        lines = ["Least Squares Regression Results (keras_linreg)".center(width), "=" * width]
        for (a, b), (c, d) in zip(left, right, strict=True):
            lines.append(f"{a:<18}{b:>18}   {c:<24}{d:>15}")
        lines.append("=" * width)
        headers = ("coef", "std err", stat, f"P>|{stat}|", "[0.025", "0.975]")
        lines.append(f"{'':<{name_width}}" + "".join(f"{h:>12}" for h in headers))
        lines.append("-" * width)
        interval = self.conf_int()
        for i, name in enumerate(names):
            cells = (self.params[i], self.bse[i], self.tvalues[i], self.pvalues[i],
                     interval[i, 0], interval[i, 1])
            lines.append(f"{name:<{name_width}}" + "".join(f"{_g(c, 6):>12}" for c in cells))
        lines.append("=" * width)
        if self.cov_type != "nonrobust":
            lines.append(
                f"Standard errors are heteroscedasticity robust ({self.cov_type}); "
                "p-values and intervals normal."
            )
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """A JSON-safe dict of every statistic (full-precision floats; non-finite as None)."""
        interval = self.conf_int()
        return {
            "model": "WLS" if self.weighted else "OLS",
            "cov_type": self.cov_type,
            "use_t": self.use_t,
            "fit_intercept": self.fit_intercept,
            "feature_names": list(self.feature_names),
            "param_names": list(self.param_names),
            "params": _floats(self.params),
            "bse": _floats(self.bse),
            "tvalues": _floats(self.tvalues),
            "pvalues": _floats(self.pvalues),
            "conf_int": [_floats(row) for row in interval],
            **{
                name: _float(getattr(self, name))
                for name in (
                    "rsquared",
                    "rsquared_adj",
                    "fvalue",
                    "f_pvalue",
                    "resid_std",
                    "llf",
                    "aic",
                    "bic",
                    "ssr",
                    "ess",
                )
            },
            "nobs": self.nobs,
            "df_model": self.df_model,
            "df_resid": self.df_resid,
        }


def ols(
    x,
    y=None,
    *,
    sample_weight=None,
    fit_intercept: bool = True,
    cov_type: str = "nonrobust",
    feature_names: Sequence[str] | None = None,
) -> OLSResult:
    """Ordinary (or, with `sample_weight`, weighted) least squares with its statistics.

    The fit is `least_squares`' (Householder QR of the centred, scaled design,
    refined with extra-precise residuals in memory; an R-factor update over
    batches), and the statistics are statsmodels' `OLS(y, X).fit(cov_type=...)`,
    or `WLS(y, X, weights=sample_weight)`, with `X = [x, 1]` (or `x` without an
    intercept); see `OLSResult` for every definition.

    Inputs: arrays, pandas objects (a DataFrame's columns name the features), or,
    with `y` omitted, a finite iterable of `(x, y)` / `(x, y, sample_weight)`
    batches (e.g. a `tf.data.Dataset`), read in one pass with O(n_features²)
    memory. A robust `cov_type` needs each row's residual under the final fit, so
    over batches it takes a second pass, which needs an iterable that starts over
    (a list, a `tf.data.Dataset`; not a generator).

    Degenerate data: fewer rows than parameters (plus one), an exactly collinear
    (or constant) column, and all-zero weights are errors. A perfect fit
    (`SSR = 0`) is answered: `resid_std`, `bse` 0, `tvalues` ±inf, `pvalues` 0,
    `rsquared` 1, `llf` +inf (the limits statsmodels reaches).

    Args:
        x: Features `(n,)` or `(n, n_features)`, a DataFrame, or an iterable of batches.
        y: Targets `(n,)` (omitted for batches).
        sample_weight: Optional non-negative `(n,)` weights (WLS).
        fit_intercept: If False, no intercept: `df_model` counts every slope and
            R² is uncentered.
        cov_type: One of "nonrobust", "HC0", "HC1", "HC2", "HC3".
        feature_names: Optional names of the features (default: a DataFrame's
            columns, else "x0", "x1", ...).

    Returns:
        An `OLSResult`.
    """
    if not isinstance(cov_type, str) or cov_type not in COV_TYPES:
        raise ValueError(
            f"Received an invalid value for `cov_type`, expected one of {COV_TYPES}. "
            f"Received: cov_type={cov_type!r}"
        )
    robust = cov_type != "nonrobust"
    fit_intercept = bool(fit_intercept)
    if inputs.is_batched(x, y):
        if robust and not inputs.reiterable(x):
            raise ValueError(
                f"Received `cov_type={cov_type!r}` with a one-pass iterator of batches: a "
                "robust covariance needs each row's residual under the final fit, a second "
                "pass over the data. Pass a list of batches or a `tf.data.Dataset` (which "
                "can be iterated again), or use cov_type='nonrobust'. "
                f"Received: x={type(x).__name__}"
            )
        solution = closed_form._solve(x, None, sample_weight, fit_intercept=fit_intercept)
        second_pass = lambda: inputs.batches(x)  # noqa: E731
    else:
        names = inputs.column_names(x)
        arrays = inputs.check_arrays(x, y, sample_weight)
        solution = closed_form._solve(
            x, y, sample_weight, fit_intercept=fit_intercept, keep_rows=robust
        )
        solution.feature_names = names
        second_pass = lambda: closed_form._chunks(*arrays)  # noqa: E731
    k = len(solution.slope)
    names = _feature_names(feature_names, solution.feature_names, k)
    _check_identified(solution, names)
    return _result(solution, names, cov_type, solution.weighted, second_pass)


# ------------------------------------------------------------------ internals
def _feature_names(given, found, k):
    if given is not None:
        names = tuple(str(name) for name in given)
        if len(names) != k:
            raise ValueError(
                f"Received an invalid value for `feature_names`, expected {k} names (one "
                f"per feature). Received: feature_names={list(given)!r}"
            )
        return names
    if found is not None and len(found) == k:
        return tuple(found)
    return tuple(f"x{j}" for j in range(k))


def _check_identified(solution, names):
    """The errors for data whose statistics are undefined."""
    p = len(solution.keep)
    if solution.weight_sum == 0:
        raise ValueError(
            "Received an invalid `sample_weight`: every weight is 0, so there is nothing "
            f"to fit. Received: sample_weight with {solution.n_rows} zeros"
        )
    if solution.n_rows <= p:
        raise ValueError(
            f"Received too few rows: {solution.n_rows} rows for {p} parameters; the "
            "residual variance, and so every standard error, needs more rows than "
            f"parameters (at least {p + 1}). Received: n_rows={solution.n_rows}"
        )
    if not solution.keep.all():
        offset = int(solution.fit_intercept)
        dropped = [int(j) - offset for j in np.flatnonzero(~solution.keep)]
        described = ", ".join(f"{j} ({names[j]!r})" for j in dropped)
        base = "the intercept and the columns" if solution.fit_intercept else "the columns"
        raise ValueError(
            f"Received an invalid `x`: column{'s' if len(dropped) > 1 else ''} {described} "
            f"{'are' if len(dropped) > 1 else 'is'} (to rounding) a linear combination of "
            f"{base} before it (a constant column, a copy, a sum of others), or there "
            f"are fewer rows of positive weight ({solution.positive_rows}) than "
            "parameters: the coefficients are not identifiable. Drop the column. "
            f"Received: x with {len(names)} columns"
        )


def _result(solution, names, cov_type, weighted, second_pass):
    p = len(solution.keep)
    k = len(names)
    n = solution.n_rows
    df_resid = n - p
    k_constant = int(solution.fit_intercept)
    df_model = p - k_constant
    ssr = max(solution.ssr, 0.0)
    scale = ssr / df_resid
    # θ = transform·u; Cov(u) ∝ R⁻¹R⁻ᵀ, so Cov(θ) ∝ M Mᵀ with M = transform·R⁻¹.
    m = solve_triangular(solution.r, solution.transform.T, trans="T").T
    use_t = cov_type == "nonrobust"
    if use_t:
        cov = scale * (m @ m.T)
    else:
        cov = m @ _meat(solution, cov_type, second_pass, df_resid) @ m.T
    order = np.r_[np.arange(1, p), 0] if solution.fit_intercept else np.arange(p)
    cov = cov[np.ix_(order, order)]
    params = solution.params[order]
    bse = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        tvalues = params / bse
    if use_t:
        pvalues = 2.0 * stats.t.sf(np.abs(tvalues), df_resid)
    else:
        pvalues = 2.0 * stats.norm.sf(np.abs(tvalues))
    tss = solution.centered_tss if solution.fit_intercept else solution.uncentered_tss
    with np.errstate(divide="ignore", invalid="ignore"):
        rsquared = 1.0 - ssr / tss if tss > 0 else float("nan")
        rsquared_adj = 1.0 - (n - k_constant) / df_resid * (1.0 - rsquared)
        ess = tss - ssr
        if use_t:
            fvalue = float(np.float64(ess / df_model) / np.float64(scale))
        else:
            slopes = params[:k]
            fvalue = float(slopes @ np.linalg.solve(cov[:k, :k], slopes)) / k
        f_pvalue = float(stats.f.sf(fvalue, df_model, df_resid))
        llf = float(
            -0.5 * n * (np.log(2.0 * np.pi * np.float64(ssr) / n) + 1.0)
            + 0.5 * solution.log_weight_sum
        )
    parameters = p
    return OLSResult(
        params=params,
        bse=bse,
        tvalues=tvalues,
        pvalues=pvalues,
        rsquared=float(rsquared),
        rsquared_adj=float(rsquared_adj),
        fvalue=fvalue,
        f_pvalue=f_pvalue,
        resid_std=math.sqrt(scale),
        nobs=n,
        df_model=df_model,
        df_resid=df_resid,
        llf=llf,
        aic=-2.0 * llf + 2.0 * parameters,
        bic=-2.0 * llf + math.log(n) * parameters,
        ssr=ssr,
        ess=float(ess),
        centered_tss=solution.centered_tss,
        uncentered_tss=solution.uncentered_tss,
        feature_names=names,
        fit_intercept=solution.fit_intercept,
        weighted=bool(weighted),
        cov_type=cov_type,
        use_t=use_t,
        _cov=cov,
    )


def _meat(solution, cov_type, second_pass, df_resid):
    """`Σ ω_i u_iᵀu_i` over the rows, `u_i` the rows of `Q = A R⁻¹` (so `h_i = |u_i|²`)."""
    if solution.q is not None:
        pieces = [(solution.q, solution.residual)]
    else:
        pieces = (
            (
                solve_triangular(solution.r, solution.whitened_design(x, w).T, trans="T").T,
                solution.whitened_residual(x, y, w),
            )
            for _, x, y, w, _ in second_pass()
        )
    q = solution.r.shape[0]
    meat = np.zeros((q, q))
    rows = 0
    for u, e in pieces:
        rows += len(e)
        omega = e * e
        if cov_type in ("HC2", "HC3"):
            leverage = np.einsum("ij,ij->i", u, u)
            with np.errstate(divide="ignore", invalid="ignore"):
                omega = omega / (1.0 - leverage) ** (1 if cov_type == "HC2" else 2)
        meat += (u * omega[:, None]).T @ u
    if rows != solution.n_rows:
        raise ValueError(
            "Received an iterable of batches that gave a different number of rows on its "
            f"second pass ({rows}) than on its first ({solution.n_rows}): a robust "
            "covariance needs the same data twice (no shuffling, a finite dataset). "
            f"Received: {rows} rows"
        )
    if cov_type == "HC1":
        meat *= solution.n_rows / df_resid
    return meat


def _quantile(level, use_t, df_resid):
    return float(stats.t.ppf(level, df_resid) if use_t else stats.norm.ppf(level))


def _g(value, digits=6):
    value = float(value)
    return f"{value:.{digits}g}" if math.isfinite(value) else str(value)


def _float(value):
    value = float(value)
    return value if math.isfinite(value) else None


def _floats(values):
    return [_float(v) for v in np.asarray(values).reshape(-1)]
