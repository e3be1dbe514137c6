"""MkDocs hook: pages filled in from the files they would otherwise repeat.

- `<!-- readme -->` (index.md) becomes README.md, its `docs/...` links made
  relative to the site, so the front page and the README are one text.
- `<!-- benchmark: NAME -->` (performance.md) becomes a table or sentence made
  from `docs/benchmark.json`, which `scripts/benchmark.py` writes, so the page
  cannot disagree with the last measurement.
- pytest-markdown-docs' fence options (```python notest, ```python
  continuation) are dropped, so those blocks render as plain Python.
"""

from __future__ import annotations

import json
import os
import re

_README = re.compile(r"<!--\s*readme\b[^>]*-->")
_README_LINK = re.compile(r"\]\(docs/")
_PLACEHOLDER = re.compile(r"<!--\s*benchmark:\s*([a-z_]+)\s*-->")
_FENCE_OPTIONS = re.compile(
    r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<lang>python|py|python3)[ \t]+[^\n`]*$", re.M
)
_METHODS = ("floor", "floor_gather", "keras_linreg", "stock", "sklearn_sgd", "sklearn_lstsq")
_MIB = 2**20


def on_page_markdown(markdown, page, config, files):
    """Strips test options from fences and fills in the benchmark placeholders."""
    if _README.search(markdown):
        root = os.path.dirname(os.path.abspath(config["config_file_path"]))
        with open(os.path.join(root, "README.md"), encoding="utf-8") as f:
            readme = _README_LINK.sub("](", f.read())
        markdown = _README.sub(lambda match: readme, markdown)
    markdown = _FENCE_OPTIONS.sub(r"\g<indent>\g<fence>\g<lang>", markdown)
    if _PLACEHOLDER.search(markdown):
        report = load_report(os.path.join(config["docs_dir"], "benchmark.json"))
        markdown = _PLACEHOLDER.sub(lambda match: render(report, match.group(1)), markdown)
    return markdown


def load_report(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def render(report, name):
    """The Markdown for the placeholder `name`; an unknown name is an error."""
    renderers = {
        "machine": _machine,
        "summary": _summary,
        "throughput": _throughput,
        "tutorial": _tutorial,
        "fit_calls": _fit_calls,
        "memory": _memory,
        "logger": _logger,
        "targets": _targets,
    }
    if name not in renderers:
        raise ValueError(
            f"Received an unknown benchmark placeholder, expected one of {sorted(renderers)}. "
            f"Received: name={name!r}"
        )
    return renderers[name](report)


def _rows(report, method, shuffle):
    return [
        row
        for row in report["throughput"]
        if row["method"] == method and row["shuffle"] == shuffle
    ]


def _row(report, n, method, shuffle):
    for row in _rows(report, method, shuffle):
        if row["n"] == n:
            return row
    return None


def _span(values, fmt):
    low, high = fmt(min(values)), fmt(max(values))
    return low if low == high else f"{low}–{high}"


def _percent(value):
    return f"{value:.0%}"


def _times(value):
    return f"{value:.0f}×" if value >= 2 else f"{value:.1f}×"


def _speedups(report, shuffle):
    out = []
    for row in _rows(report, "keras_linreg", shuffle):
        stock = _row(report, row["n"], "stock", shuffle)
        if stock is not None:
            out.append(stock["seconds_per_epoch"] / row["seconds_per_epoch"])
    return out


def _fractions(report, method, shuffle):
    return [row["fraction_of_floor"] for row in _rows(report, method, shuffle)]


def _machine(report):
    m = report["machine"]
    parts = [m.get("cpu", "unknown CPU"), f"{m['cpus']} cores"]
    if "ram_gib" in m:
        parts.append(f"{m['ram_gib']} GiB RAM")
    parts += [
        f"Python {m['python']}",
        f"TensorFlow {m['tensorflow']}",
        f"Keras {m['keras']}",
        f"NumPy {m['numpy']}",
    ]
    if "scikit_learn" in m:
        parts.append(f"scikit-learn {m['scikit_learn']}")
    load = ", ".join(f"{value:.1f}" for value in m.get("load_average_at_start", []))
    text = "Machine: " + ", ".join(parts) + "."
    if load:
        text += f" Load average (1, 5, 15 min) when the run started: {load}."
    return text


def _summary(report):
    plain = _fractions(report, "keras_linreg", False)
    text = (
        f"without shuffling it runs at {_span(plain, _percent)} of the in-graph floor "
        f"({_span(_speedups(report, False), _times)} stock Keras), with shuffling "
        f"{_span(_speedups(report, True), _times)} stock Keras"
    )
    if "tutorial" in report:
        t = report["tutorial"]
        text += (
            f", the tutorial in {t['keras_linreg_over_eager']:.2f}× the time of the "
            f"tutorial's own eager loop (stock Keras: {_times(t['stock_over_eager'])})"
        )
    memory = report.get("memory")
    if memory:
        ours = [r["added_over_data"] for r in memory if r["method"] == "keras_linreg"]
        stock = [r["added_over_data"] for r in memory if r["method"] == "stock"]
        text += (
            f", and it adds {_span(ours, '{:.2f}'.format)}× the data's bytes in memory "
            f"(stock: {_span(stock, '{:.2f}'.format)}×)"
        )
    return text + "."


def _throughput(report):
    methods = [m for m in _METHODS if any(r["method"] == m for r in report["throughput"])]
    lines = [
        "| N | shuffle | " + " | ".join(methods) + " |",
        "|---|---|" + "---|" * len(methods),
    ]
    sizes = sorted({row["n"] for row in report["throughput"]})
    for n in sizes:
        for shuffle in (False, True):
            cells = []
            for method in methods:
                row = _row(report, n, method, shuffle)
                cells.append(
                    "–"
                    if row is None
                    else f"{row['seconds_per_epoch']:.4f} s "
                    f"({row['rows_per_second'] / 1e6:.1f} M/s, {row['fraction_of_floor']:.0%})"
                )
            lines.append(f"| {n:,d} | {shuffle} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fit_calls(report):
    rows = report.get("fit_calls")
    if not rows:
        return "(not measured in this run)"
    lines = [
        "| N | shuffle | `fit`, 3 epochs | per epoch | setup per call | floor epoch "
        "| copy | 3 floor epochs + copy | ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["n"], r["shuffle"])):
        lines.append(
            f"| {r['n']:,d} | {r['shuffle']} | {r['fit_seconds']:.4f} s "
            f"| {r['fit_seconds_per_epoch']:.4f} s | {r['setup_seconds']:.4f} s "
            f"| {r['floor_seconds_per_epoch']:.4f} s | {r['copy_seconds']:.4f} s "
            f"| {r['reference_seconds']:.4f} s | {r['ratio']:.2f} |"
        )
    return "\n".join(lines)


def _tutorial(report):
    t = report["tutorial"]
    return (
        f"eager GradientTape loop {t['eager_loop']:.3f} s, `keras_linreg` "
        f"{t['keras_linreg']:.3f} s ({t['keras_linreg_over_eager']:.2f}×), stock Keras fit "
        f"{t['stock']:.2f} s ({t['stock_over_eager']:.1f}×)"
    )


def _memory(report):
    rows = report["memory"]

    def ratio(method, shuffle):
        for r in rows:
            if r["method"] == method and r["shuffle"] == shuffle:
                return f"{r['added_over_data']:.2f}×"
        return "–"

    n = rows[0]["n"]
    mib = rows[0]["data_bytes"] / _MIB
    return (
        f"N = {n:,d} rows, {mib:.0f} MiB of data: stock {ratio('stock', False)} "
        f"(`shuffle=False`) and {ratio('stock', True)} (`shuffle=True`) the data's bytes, "
        f"`keras_linreg` {ratio('keras_linreg', False)} and {ratio('keras_linreg', True)}"
    )


_LOGGER_METHODS = {
    "none": "no logger",
    "parameter_logger": "`ParameterLogger`",
    "previous_parameter_logger": "`ParameterLogger` before issue 17",
}


def _logger(report):
    section = report.get("logger")
    if not section:
        return "(not measured in this run)"
    rows = section["rows"]
    lines = [
        "| batch | " + " | ".join(_LOGGER_METHODS.values()) + " |",
        "|---|" + "---|" * len(_LOGGER_METHODS),
    ]
    for batch in dict.fromkeys(row["batch"] for row in rows):
        cells = []
        for method in _LOGGER_METHODS:
            row = next((r for r in rows if r["batch"] == batch and r["method"] == method), None)
            cells.append(
                "–"
                if row is None
                else f"{row['seconds_per_epoch'] * 1e3:.3f} ms ({row['over_none']:.2f}×)"
            )
        label = "full (442 rows)" if batch == "full" else str(batch)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    m = section["machine"]
    load = ", ".join(f"{value:.1f}" for value in m.get("load_average_at_start", []))
    fits = rows[0]["fits"]
    lines.append("")
    lines.append(
        f"Median epoch over {fits} interleaved fits per cell ({rows[0]['epochs_per_fit']} epochs "
        f"full batch, {rows[-1]['epochs_per_fit']} at batch 32); {m.get('cpu', 'unknown CPU')}, "
        f"{m['cpus']} cores, load average (1, 5, 15 min) {load} when it started."
    )
    return "\n".join(lines)


def _targets(report):
    plain = _fractions(report, "keras_linreg", False)
    shuffled = {row["n"]: row["fraction_of_floor"] for row in _rows(report, "keras_linreg", True)}
    gather = _fractions(report, "floor_gather", True)
    relative = []
    for row in _rows(report, "keras_linreg", True):
        floor_gather = _row(report, row["n"], "floor_gather", True)
        if floor_gather is not None:
            relative.append(row["rows_per_second"] / floor_gather["rows_per_second"])

    def met(ok):
        return "met" if ok else "**not met**"

    lines = [
        f"- ≥ 60% of the floor without shuffling: {met(min(plain) >= 0.6)} "
        f"({_span(plain, _percent)}).",
        f"- ≥ 30% of the floor with `shuffle=True`: {met(min(shuffled.values()) >= 0.3)} ("
        + ", ".join(f"{fraction:.0%} at N = {n:,d}" for n, fraction in sorted(shuffled.items()))
        + f"); `floor_gather`, the floor with only the row gather added, reaches "
        f"{_span(gather, _percent)} itself, and `keras_linreg` runs at "
        f"{_span(relative, '{:.1f}'.format)}× of it.",
    ]
    calls = report.get("fit_calls")
    if calls:
        for shuffle, target in ((False, 0.9), (True, 0.35)):
            ratios = {r["n"]: r["ratio"] for r in calls if r["shuffle"] == shuffle}
            lines.append(
                f"- `fit(x, y, epochs=3, shuffle={shuffle})` ≥ {target} × (3 floor epochs + "
                f"one copy of the arrays): {met(min(ratios.values()) >= target)} ("
                + ", ".join(f"{ratio:.2f} at N = {n:,d}" for n, ratio in sorted(ratios.items()))
                + ")."
            )
    if "tutorial" in report:
        ratio = report["tutorial"]["keras_linreg_over_eager"]
        lines.append(
            f"- The tutorial no slower than its eager loop: {met(ratio <= 1)} ({ratio:.2f}×)."
        )
    if report.get("logger"):
        ratios = {
            r["batch"]: r["over_none"]
            for r in report["logger"]["rows"]
            if r["method"] == "parameter_logger"
        }
        lines.append(
            f"- An epoch with `ParameterLogger` ≤ 2× one without (442 × 10): "
            f"{met(max(ratios.values()) <= 2)} ("
            + ", ".join(
                f"{ratio:.2f}× {'full batch' if batch == 'full' else f'at batch {batch}'}"
                for batch, ratio in ratios.items()
            )
            + ")."
        )
    if report.get("memory"):
        ours = [r["added_over_data"] for r in report["memory"] if r["method"] == "keras_linreg"]
        lines.append(
            f"- ≤ 1.5× the data's bytes added in memory: {met(max(ours) <= 1.5)} "
            f"({_span(ours, '{:.2f}'.format)}×)."
        )
    return "\n".join(lines)
