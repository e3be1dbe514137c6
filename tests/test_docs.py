"""The documentation's own rules: short README and module docstrings, the MkDocs hook.

The code blocks of README.md and docs/*.md run as tests of their own (conftest.py
at the repository root); `mkdocs build --strict` runs in ./scripts/test.
"""

import ast
import importlib.util
import json
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
MAX_DOCSTRING_LINES = 15


def _hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _report():
    return json.loads((ROOT / "docs" / "benchmark.json").read_text(encoding="utf-8"))


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; move prose to docs/"


@pytest.mark.parametrize(
    "path",
    sorted((ROOT / "keras_linreg").glob("*.py")) + sorted((ROOT / "keras_linreg_cli").glob("*.py")),
    ids=lambda path: f"{path.parent.name}/{path.name}",
)
def test_module_docstrings_state_what_and_why_in_a_few_lines(path):
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    lines = len(docstring.splitlines())
    assert lines <= MAX_DOCSTRING_LINES, (
        f"{path.name}'s module docstring has {lines} lines; design prose goes in docs/design/"
    )


def test_throughput_table_has_every_measurement():
    report = _report()
    table = _hooks().render(report, "throughput").splitlines()
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    cells = {}
    for line in table[2:]:
        row = [cell.strip() for cell in line.strip("|").split("|")]
        n, shuffle = int(row[0].replace(",", "")), row[1] == "True"
        for method, cell in zip(header[2:], row[2:], strict=True):
            cells[(n, shuffle, method)] = cell
    assert len(cells) == len({(r["n"], r["shuffle"]) for r in report["throughput"]}) * (
        len(header) - 2
    )
    for row in report["throughput"]:
        cell = cells[(row["n"], row["shuffle"], row["method"])]
        seconds, rate, percent = re.fullmatch(r"([\d.]+) s \(([\d.]+) M/s, (\d+)%\)", cell).groups()
        assert float(seconds) == pytest.approx(row["seconds_per_epoch"], abs=5e-5)
        assert float(rate) == pytest.approx(row["rows_per_second"] / 1e6, abs=0.05)
        assert int(percent) == round(100 * row["fraction_of_floor"])
    measured = {(r["n"], r["shuffle"], r["method"]) for r in report["throughput"]}
    assert all(cell == "–" for key, cell in cells.items() if key not in measured)


def test_every_placeholder_of_the_performance_page_renders():
    hooks = _hooks()
    page = (ROOT / "docs" / "performance.md").read_text(encoding="utf-8")
    names = re.findall(r"<!--\s*benchmark:\s*([a-z_]+)\s*-->", page)
    assert set(names) >= {
        "summary", "throughput", "fit_calls", "tutorial", "memory", "targets", "machine",
        "logger",
    }
    config = {"docs_dir": str(ROOT / "docs"), "config_file_path": str(ROOT / "mkdocs.yml")}
    rendered = hooks.on_page_markdown(page, None, config, None)
    assert "<!-- benchmark" not in rendered
    tutorial = _report()["tutorial"]
    assert f"{tutorial['keras_linreg_over_eager']:.2f}×" in rendered


def test_fit_calls_table_has_every_measured_call():
    report = _report()
    table = _hooks().render(report, "fit_calls").splitlines()
    assert len(table) == 2 + len(report["fit_calls"])
    for row in report["fit_calls"]:
        cells = [
            line for line in table[2:]
            if line.startswith(f"| {row['n']:,d} | {row['shuffle']} |")
        ]
        assert len(cells) == 1
        assert cells[0].endswith(f"| {row['ratio']:.2f} |")
        assert f"| {row['fit_seconds']:.4f} s |" in cells[0]
        assert row["ratio"] == pytest.approx(
            (row["epochs"] * row["floor_seconds_per_epoch"] + row["copy_seconds"])
            / row["fit_seconds"]
        )


def test_an_unknown_placeholder_is_an_error():
    with pytest.raises(ValueError, match="unknown benchmark placeholder"):
        _hooks().render(_report(), "througput")


def test_the_front_page_is_the_readme_with_site_links():
    config = {"docs_dir": str(ROOT / "docs"), "config_file_path": str(ROOT / "mkdocs.yml")}
    page = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    rendered = _hooks().on_page_markdown(page, None, config, None)
    assert "## Quickstart" in rendered
    assert "](model.md)" in rendered and "](docs/" not in rendered


def test_fence_options_render_as_plain_python():
    page = "```python notest\na = 1\n```\n\n```python continuation\nb = a\n```\n"
    rendered = _hooks().on_page_markdown(page, None, {}, None)
    assert rendered == "```python\na = 1\n```\n\n```python\nb = a\n```\n"


def test_logger_table_has_every_measurement():
    """Each logger cell is its JSON row: milliseconds per epoch and the ratio to no logger."""
    section = _report()["logger"]
    table = _hooks().render({"logger": section}, "logger").splitlines()
    header = [cell.strip() for cell in table[0].strip("|").split("|")][1:]
    assert len(header) == 3
    for line in table[2:4]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        batch = "full" if cells[0].startswith("full") else int(cells[0])
        rows = [r for r in section["rows"] if r["batch"] == batch]
        none = next(r for r in rows if r["method"] == "none")
        for row, cell in zip(rows, cells[1:], strict=True):
            ms, ratio = re.fullmatch(r"([\d.]+) ms \(([\d.]+)×\)", cell).groups()
            assert float(ms) == pytest.approx(row["seconds_per_epoch"] * 1e3, abs=5e-4)
            assert float(ratio) == pytest.approx(
                row["seconds_per_epoch"] / none["seconds_per_epoch"], abs=5e-3
            )
