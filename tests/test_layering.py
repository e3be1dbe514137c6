"""The library sits below the command line: `keras_linreg` never imports `keras_linreg_cli`."""

import ast
import pathlib

import keras_linreg

_LIBRARY = pathlib.Path(keras_linreg.__file__).parent
_FORBIDDEN = ("keras_linreg_cli", "argparse")


def _imports(path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module


def _has_main_guard(path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return any(
        isinstance(node, ast.If) and "__main__" in ast.unparse(node.test) for node in ast.walk(tree)
    )


def test_no_library_module_imports_the_command_line_or_is_an_app():
    modules = sorted(_LIBRARY.rglob("*.py"))
    assert len(modules) > 10 and _LIBRARY.name == "keras_linreg"
    for path in modules:
        upward = [name for name in _imports(path) if name.split(".")[0] in _FORBIDDEN]
        assert not upward, f"{path.relative_to(_LIBRARY.parent)} imports {upward}"
        assert not _has_main_guard(path), f"{path.name} is an app; apps live in keras_linreg_cli"
    assert not (_LIBRARY / "demo.py").exists() and not (_LIBRARY / "training.py").exists()


def test_the_scan_sees_an_upward_import(tmp_path):
    """The scan above can fail: it finds both import forms and a main guard."""
    path = tmp_path / "m.py"
    path.write_text("import argparse\nfrom keras_linreg_cli.demo import tutorial_data\n")
    assert [name.split(".")[0] for name in _imports(path)] == list(_FORBIDDEN[::-1])
    path.write_text("if __name__ == '__main__':\n    pass\n")
    assert _has_main_guard(path)


# That `import keras_linreg` loads no module of keras_linreg_cli is checked in a
# fresh process by tests/test_imports.py (one process for that and `-W error`).
