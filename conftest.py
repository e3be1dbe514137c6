"""Runs the Python code blocks of README.md and docs/*.md as tests.

`pyproject.toml` lists both among pytest's testpaths; this hook hands every
Markdown file pytest meets to pytest-markdown-docs, so `./scripts/test` (and a
plain `pytest`) executes each ```python block: a changed API fails a test
instead of silently breaking the docs. A ```python notest block is shown but
not run; ```python continuation runs after the blocks before it. Each block
runs in a fresh temporary working directory, so files a block writes
(`model.keras`, `logs/...`) never land in the checkout, and what it prints is
discarded. The test modules'
own set-up is in tests/conftest.py.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
from pytest_markdown_docs.plugin import MarkdownTextFile  # noqa: E402

from keras_linreg_cli import import_tensorflow_quietly  # noqa: E402

# TensorFlow's C++ start-up lines ignore TF_CPP_MIN_LOG_LEVEL.
import_tensorflow_quietly()


def pytest_collect_file(file_path, parent):
    # With --markdown-docs the plugin collects Markdown files itself.
    if file_path.suffix == ".md" and not parent.config.option.markdowndocs:
        return MarkdownTextFile.from_parent(parent, path=file_path)
    return None


def pytest_markdown_docs_globals():
    # The plugin runs blocks with pytest's output capture off; what they print
    # is for readers, not for the test log.
    return {"print": _discard}


def _discard(*args, **kwargs):
    return None


@pytest.fixture(autouse=True)
def _markdown_blocks_run_in_a_temporary_directory(request):
    if request.node.path.suffix == ".md":
        tmp_path = request.getfixturevalue("tmp_path")
        request.getfixturevalue("monkeypatch").chdir(tmp_path)
