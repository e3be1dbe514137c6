"""`keras_linreg.ols`: every statistic against statsmodels, and NIST's certified values.

References: statsmodels' `OLS`/`WLS(...).fit(cov_type=...)` on random
heteroscedastic data and on statsmodels' own Longley data (rtol 1e-8 for every
listed quantity), and the NIST StRD certified parameters, standard deviations,
residual SD and R² (correct digits, read from ../shared/data, skipped when absent).
Streaming (lists of batches, `tf.data.Dataset`s) must equal the in-memory answer.
"""

import json
import math
import warnings
from fractions import Fraction

import _nist
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import tensorflow as tf
from scipy import stats

import keras_linreg

COV_TYPES = ("nonrobust", "HC0", "HC1", "HC2", "HC3")
SCALARS = (
    "rsquared", "rsquared_adj", "fvalue", "f_pvalue", "llf", "aic", "bic",
    "nobs", "df_model", "df_resid",
)  # fmt: skip
VECTORS = ("params", "bse", "tvalues", "pvalues")


def statsmodels_fit(x, y, w, fit_intercept, cov_type):
    design = sm.add_constant(np.asarray(x, float), prepend=False, has_constant="add")
    design = design if fit_intercept else np.asarray(x, float)
    model = sm.OLS(y, design) if w is None else sm.WLS(y, design, weights=w)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statsmodels' own warnings (e.g. log(0) weights)
        return model.fit(cov_type=cov_type)


def assert_matches(result, reference, rtol=1e-8):
    for name in VECTORS:
        np.testing.assert_allclose(
            getattr(result, name), np.asarray(getattr(reference, name)), rtol=rtol, err_msg=name
        )
    for name in SCALARS:
        expected = float(getattr(reference, name))
        assert getattr(result, name) == pytest.approx(expected, rel=rtol), name
    assert result.resid_std == pytest.approx(math.sqrt(reference.scale), rel=rtol)
    np.testing.assert_allclose(result.cov_params(), reference.cov_params(), rtol=rtol, atol=0)
    for alpha in (0.05, 0.1):
        np.testing.assert_allclose(
            result.conf_int(alpha), reference.conf_int(alpha), rtol=rtol, err_msg=f"{alpha}"
        )


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(15)
    n = 80
    x = rng.normal(size=(n, 3)) * [1.0, 10.0, 0.1] + [0.0, 100.0, 5.0]
    noise = rng.normal(size=n) * (0.5 + np.abs(x[:, 0]))  # heteroscedastic
    y = x @ [1.0, -0.2, 3.0] + 2.0 + noise
    w = rng.uniform(0.2, 3.0, n)
    return x, y, w


# ---------------------------------------------------------------- statsmodels
@pytest.mark.parametrize("cov_type", COV_TYPES)
@pytest.mark.parametrize("fit_intercept", [True, False], ids=["intercept", "origin"])
@pytest.mark.parametrize("weighted", [False, True], ids=["OLS", "WLS"])
def test_every_statistic_equals_statsmodels(data, cov_type, fit_intercept, weighted):
    x, y, w = data
    w = w if weighted else None
    result = keras_linreg.ols(x, y, sample_weight=w, fit_intercept=fit_intercept, cov_type=cov_type)
    assert_matches(result, statsmodels_fit(x, y, w, fit_intercept, cov_type))
    assert result.use_t == (cov_type == "nonrobust")
    assert result.weighted == weighted
    np.testing.assert_array_equal(result.slope, result.params[:3])
    assert result.intercept == (result.params[3] if fit_intercept else 0.0)


def exact_reference(x, y, fit_intercept, cov_type):
    """Parameters, covariance and F in exact rational arithmetic (`fractions`), by hand.

    The normal equations solved exactly for the float64 data, so the answer has no
    rounding error at all until the final conversion to float.
    """
    rows = [[Fraction(v) for v in row] + ([Fraction(1)] if fit_intercept else []) for row in x]
    target = [Fraction(v) for v in y]
    n, p = len(rows), len(rows[0])

    def inverse(a):
        m = len(a)
        work = [list(a[i]) + [Fraction(int(i == j)) for j in range(m)] for i in range(m)]
        for c in range(m):
            for r in range(m):
                if r != c:
                    f = work[r][c] / work[c][c]
                    work[r] = [work[r][k] - f * work[c][k] for k in range(2 * m)]
        return [[work[i][m + j] / work[i][i] for j in range(m)] for i in range(m)]

    def product(a, b):
        return [[sum(a[i][k] * b[k][j] for k in range(len(b))) for j in range(len(b[0]))]
                for i in range(len(a))]

    gram_inverse = inverse([[sum(r[a] * r[b] for r in rows) for b in range(p)] for a in range(p)])
    moments = [sum(r[b] * t for r, t in zip(rows, target, strict=True)) for b in range(p)]
    beta = [sum(gram_inverse[a][b] * moments[b] for b in range(p)) for a in range(p)]
    resid = [t - sum(r[a] * beta[a] for a in range(p)) for r, t in zip(rows, target, strict=True)]
    ssr = sum(e * e for e in resid)
    if cov_type == "nonrobust":
        cov = [[ssr / (n - p) * v for v in row] for row in gram_inverse]
    else:
        omega = [e * e for e in resid]
        if cov_type in ("HC2", "HC3"):
            leverage = [sum(r[a] * gram_inverse[a][b] * r[b] for a in range(p) for b in range(p))
                        for r in rows]
            power = 1 if cov_type == "HC2" else 2
            omega = [o / (1 - h) ** power for o, h in zip(omega, leverage, strict=True)]
        if cov_type == "HC1":
            omega = [o * Fraction(n, n - p) for o in omega]
        meat = [[sum(o * r[a] * r[b] for o, r in zip(omega, rows, strict=True)) for b in range(p)]
                for a in range(p)]
        cov = product(product(gram_inverse, meat), gram_inverse)
    k = p - int(fit_intercept)
    if cov_type == "nonrobust":
        tss = (sum((t - sum(target) / n) ** 2 for t in target) if fit_intercept
               else sum(t * t for t in target))
        fvalue = ((tss - ssr) / k) / (ssr / (n - p))
    else:
        slopes = [[b] for b in beta[:k]]
        wald = product(inverse([row[:k] for row in cov[:k]]), slopes)
        fvalue = sum(b[0] * w[0] for b, w in zip(slopes, wald, strict=True)) / k
    return (np.array([float(b) for b in beta]), np.array([[float(v) for v in row] for row in cov]),
            float(fvalue))


@pytest.mark.parametrize("cov_type", COV_TYPES)
@pytest.mark.parametrize("fit_intercept", [True, False], ids=["intercept", "origin"])
def test_longley_from_a_dataframe_equals_statsmodels(cov_type, fit_intercept):
    """statsmodels' own Longley data (offline), ill-conditioned (cond ~ 1e8 raw).

    statsmodels solves by `pinv` of the raw design and loses digits here: measured,
    its robust F is 1.6e-8 off the exact value and its p-values, which amplify
    `t`'s error by about t², up to 1e-7. So the parameters, covariance and F are
    checked against an exact rational computation, the p-values against scipy on
    the exact t, and every other statistic against statsmodels at 1e-8.
    """
    longley = sm.datasets.longley.load_pandas()
    x, y = longley.exog, longley.endog
    result = keras_linreg.ols(x, y, fit_intercept=fit_intercept, cov_type=cov_type)
    params, cov, fvalue = exact_reference(x.to_numpy(), y.to_numpy(), fit_intercept, cov_type)
    np.testing.assert_allclose(result.params, params, rtol=1e-12)
    np.testing.assert_allclose(result.cov_params(), cov, rtol=1e-11)
    # The Wald F inverts the slopes' covariance (cond ~ 1e10 without an intercept).
    assert result.fvalue == pytest.approx(fvalue, rel=1e-9)
    exact_t = params / np.sqrt(np.diag(cov))
    exact_p = 2 * (stats.t.sf(np.abs(exact_t), result.df_resid) if cov_type == "nonrobust"
                   else stats.norm.sf(np.abs(exact_t)))
    np.testing.assert_allclose(result.pvalues, exact_p, rtol=1e-9)
    reference = statsmodels_fit(x.to_numpy(), y.to_numpy(), None, fit_intercept, cov_type)
    assert reference.fvalue == pytest.approx(fvalue, rel=1e-6)  # statsmodels: same definition
    for name in ("params", "bse", "tvalues"):
        np.testing.assert_allclose(getattr(result, name), getattr(reference, name), rtol=1e-8)
    for name in SCALARS:
        if name not in ("fvalue", "f_pvalue"):
            assert getattr(result, name) == pytest.approx(float(getattr(reference, name)),
                                                          rel=1e-8), name
    assert result.f_pvalue == pytest.approx(stats.f.sf(fvalue, result.df_model, result.df_resid),
                                            rel=1e-8, abs=1e-300)
    # The intervals' bounds cancel (intercept ≈ −3.5e6, a bound ≈ 4.5e4), amplifying
    # statsmodels' error in bse, so they are checked against the exact ones.
    quantile = (stats.t.ppf(0.975, result.df_resid) if cov_type == "nonrobust"
                else stats.norm.ppf(0.975))
    exact_bse = np.sqrt(np.diag(cov))
    np.testing.assert_allclose(
        result.conf_int(),
        np.column_stack([params - quantile * exact_bse, params + quantile * exact_bse]),
        rtol=1e-9,
    )
    assert result.resid_std == pytest.approx(math.sqrt(reference.scale), rel=1e-8)
    assert result.feature_names == tuple(x.columns)
    assert result.param_names == tuple(x.columns) + (("intercept",) if fit_intercept else ())


def test_zero_weight_rows_count_in_nobs_as_in_statsmodels(data):
    x, y, w = data
    w = w.copy()
    w[:5] = 0.0
    result = keras_linreg.ols(x, y, sample_weight=w)
    reference = statsmodels_fit(x, y, w, True, "nonrobust")
    np.testing.assert_allclose(result.params, reference.params, rtol=1e-8)
    np.testing.assert_allclose(result.bse, reference.bse, rtol=1e-8)
    assert result.nobs == reference.nobs == 80
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statsmodels' log(0)
        assert result.llf == reference.llf == -math.inf  # ½·Σ log w with a zero weight
    # The parameters are those of the fit without the zero-weight rows.
    np.testing.assert_allclose(
        result.params, keras_linreg.ols(x[5:], y[5:], sample_weight=w[5:]).params, rtol=1e-10
    )


# -------------------------------------------------------------------- NIST StRD
@pytest.mark.parametrize(
    "name",
    ["Norris", "Pontius", "NoInt1", "NoInt2", "Filip", "Longley",
     "Wampler1", "Wampler2", "Wampler3", "Wampler4", "Wampler5"],
)  # fmt: skip
def test_nist_certified_values(name):
    dataset = _nist.load_or_skip()[name]
    x, y, fit_intercept = _nist.design(dataset)
    result = keras_linreg.ols(x, y, fit_intercept=fit_intercept)
    params = _nist.digits(result.params, _nist.certified_in_our_order(dataset, "certified_params"))
    bse = _nist.digits(result.bse, _nist.certified_in_our_order(dataset, "certified_param_sd"))
    resid_std = _nist.digits(result.resid_std, dataset["certified_residual_sd"])
    rsquared = _nist.digits(result.rsquared, dataset["certified_r_squared"])
    print(f"{name}: params {params:.1f}, bse {bse:.1f}, resid_std {resid_std:.1f}, "
          f"R² {rsquared:.1f}")
    assert params >= (6 if name == "Wampler5" else 7)
    assert min(bse, resid_std, rsquared) >= 6


# -------------------------------------------------------------------- streaming
def _same(a, b, rtol=1e-10):
    for name in VECTORS:
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=rtol, err_msg=name)
    for name in (*SCALARS, "resid_std", "ssr"):
        assert getattr(a, name) == pytest.approx(getattr(b, name), rel=rtol), name
    np.testing.assert_allclose(a.conf_int(), b.conf_int(), rtol=rtol)


@pytest.mark.parametrize("cov_type", COV_TYPES)
@pytest.mark.parametrize("fit_intercept", [True, False], ids=["intercept", "origin"])
def test_a_list_of_batches_equals_the_arrays(data, cov_type, fit_intercept):
    x, y, w = data
    batches = [(x[i : i + 7], y[i : i + 7], w[i : i + 7]) for i in range(0, len(x), 7)]
    streamed = keras_linreg.ols(batches, fit_intercept=fit_intercept, cov_type=cov_type)
    _same(streamed, keras_linreg.ols(x, y, sample_weight=w, fit_intercept=fit_intercept,
                                     cov_type=cov_type))
    assert streamed.weighted


@pytest.mark.parametrize("cov_type", ["nonrobust", "HC3"])
def test_a_tf_data_dataset_equals_the_arrays(data, cov_type):
    x, y, _ = data
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    streamed = keras_linreg.ols(dataset, cov_type=cov_type)
    _same(streamed, keras_linreg.ols(x, y, cov_type=cov_type))
    assert not streamed.weighted


def test_a_generator_streams_once_and_refuses_a_second_pass(data):
    x, y, _ = data
    chunks = ((x[i : i + 10], y[i : i + 10]) for i in range(0, len(x), 10))
    _same(keras_linreg.ols(chunks), keras_linreg.ols(x, y))
    once = ((x[i : i + 10], y[i : i + 10]) for i in range(0, len(x), 10))
    with pytest.raises(ValueError, match="second pass.*Received: x=generator"):
        keras_linreg.ols(once, cov_type="HC1")


def test_dataframe_batches_name_the_features(data):
    x, y, _ = data
    frame = pd.DataFrame(x, columns=["a", "b", "c"])
    batches = [(frame.iloc[i : i + 20], y[i : i + 20]) for i in range(0, len(x), 20)]
    assert keras_linreg.ols(batches).feature_names == ("a", "b", "c")
    assert keras_linreg.ols(x, y, feature_names=["u", "v", "w"]).param_names == (
        "u", "v", "w", "intercept",
    )  # fmt: skip
    with pytest.raises(ValueError, match="`feature_names`, expected 3 names"):
        keras_linreg.ols(x, y, feature_names=["u"])


def test_large_arrays_stream_in_chunks_with_the_same_answer(data, monkeypatch):
    from keras_linreg import closed_form

    x, y, w = data
    expected = keras_linreg.ols(x, y, sample_weight=w, cov_type="HC2")
    monkeypatch.setattr(closed_form, "_REFINE_MAX_ENTRIES", 10)  # force the chunked path
    monkeypatch.setattr(closed_form, "_CHUNK_ROWS", 9)
    _same(keras_linreg.ols(x, y, sample_weight=w, cov_type="HC2"), expected)


# ------------------------------------------------------------- degenerate data
def test_fewer_rows_than_parameters_is_an_error():
    with pytest.raises(ValueError, match="3 rows for 3 parameters.*at least 4"):
        keras_linreg.ols(np.arange(6.0).reshape(3, 2), [1.0, 2.0, 4.0])


def test_an_exactly_collinear_column_is_named():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(30, 2))
    x = np.column_stack([x, x[:, 0] + 2.0 * x[:, 1]])
    y = rng.normal(size=30)
    with pytest.raises(ValueError, match=r"column 2 \('c'\) is .*linear combination"):
        keras_linreg.ols(pd.DataFrame(x, columns=["a", "b", "c"]), y)
    with pytest.raises(ValueError, match=r"column 1 \('x1'\)"):  # a constant column
        keras_linreg.ols(np.column_stack([x[:, 0], np.full(30, 4.0)]), y)


def test_all_zero_weights_is_an_error():
    with pytest.raises(ValueError, match="`sample_weight`: every weight is 0"):
        keras_linreg.ols(np.arange(5.0), np.arange(5.0), sample_weight=np.zeros(5))


def test_a_perfect_fit_has_the_documented_limits():
    x = np.arange(10.0)
    result = keras_linreg.ols(x, 3.0 * x + 1.0)  # no warning (warnings are errors here)
    np.testing.assert_allclose(result.params, [3.0, 1.0], rtol=1e-14)
    assert result.rsquared == pytest.approx(1.0, abs=1e-14)
    assert result.resid_std < 1e-13 and np.all(result.bse < 1e-13)
    assert np.all(np.abs(result.tvalues) > 1e12) and np.all(result.pvalues < 1e-12)


def test_invalid_arguments_name_themselves(data):
    x, y, _ = data
    with pytest.raises(ValueError, match="`cov_type`.*Received: cov_type='HC4'"):
        keras_linreg.ols(x, y, cov_type="HC4")
    with pytest.raises(ValueError, match="`alpha`.*Received: alpha=1.5"):
        keras_linreg.ols(x, y).conf_int(1.5)
    with pytest.raises(ValueError, match="non-finite values in `y`"):
        keras_linreg.ols(x, np.r_[np.nan, y[1:]])
    with pytest.raises(ValueError, match="`sample_weight` beside an iterable"):
        keras_linreg.ols([(x, y)], sample_weight=np.ones(len(y)))


# --------------------------------------------------------------------- output
def test_to_dict_is_json_safe_and_complete(data):
    x, y, w = data
    result = keras_linreg.ols(pd.DataFrame(x, columns=["a", "b", "c"]), y, sample_weight=w,
                              cov_type="HC1")
    restored = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert restored["model"] == "WLS" and restored["cov_type"] == "HC1"
    assert restored["param_names"] == ["a", "b", "c", "intercept"]
    for name in VECTORS:
        assert restored[name] == [float(v) for v in getattr(result, name)]  # full precision
    assert restored["conf_int"] == result.conf_int().tolist()
    for name in SCALARS:
        assert restored[name] == getattr(result, name)
    assert restored["resid_std"] == result.resid_std


def test_summary_shows_every_parameter_and_the_fit(data):
    x, y, _ = data
    result = keras_linreg.ols(pd.DataFrame(x, columns=["rooms", "age", "area"]), y)
    text = result.summary()
    for label in ("rooms", "age", "area", "intercept", "R-squared:", "F-statistic:", "AIC:",
                  "P>|t|", "[0.025"):
        assert label in text
    assert f"{result.rsquared:.6g}" in text and f"{result.params[1]:.6g}" in text
    assert "P>|z|" in keras_linreg.ols(x, y, cov_type="HC0").summary()
