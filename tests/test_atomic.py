"""`keras_linreg._atomic`: a file or directory appears complete at its path, or not at all.

Real files under `tmp_path`, a real umask (set in the test, restored after).
"""

import os
import stat
import tempfile

import pytest

from keras_linreg import _atomic

UMASK = 0o027  # not the usual 0o022, so a hard-coded mode cannot pass by accident


@pytest.fixture
def umask():
    previous = os.umask(UMASK)
    try:
        yield UMASK
    finally:
        os.umask(previous)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def _write_text(text):
    def write(temporary):
        with open(temporary, "w", encoding="utf-8") as stream:
            stream.write(text)

    return write


def test_a_new_file_gets_the_permissions_of_a_plain_open(tmp_path, umask):
    with open(tmp_path / "plain.txt", "w") as stream:  # the reference
        stream.write("x")
    handle, private = tempfile.mkstemp(dir=tmp_path)  # what a temporary-file rename gave
    os.close(handle)
    assert _mode(private) == 0o600 != _mode(tmp_path / "plain.txt")

    written = _atomic.write_atomically(tmp_path / "atomic.txt", _write_text("hello"))
    assert written == str(tmp_path / "atomic.txt")
    assert (tmp_path / "atomic.txt").read_text() == "hello"
    assert _mode(tmp_path / "atomic.txt") == _mode(tmp_path / "plain.txt") == 0o666 & ~umask


def test_a_new_directory_gets_the_permissions_of_a_plain_mkdir(tmp_path, umask):
    os.mkdir(tmp_path / "plain")

    def write(temporary):
        with open(os.path.join(temporary, "inside.txt"), "w") as stream:
            stream.write("x")

    _atomic.write_atomically(tmp_path / "atomic", write, directory=True)
    assert (tmp_path / "atomic" / "inside.txt").read_text() == "x"
    assert _mode(tmp_path / "atomic") == _mode(tmp_path / "plain") == 0o777 & ~umask


def test_a_replaced_file_keeps_its_mode_as_writing_into_it_would(tmp_path, umask):
    path = tmp_path / "out.csv"
    path.write_text("old")
    os.chmod(path, 0o604)
    _atomic.write_atomically(path, _write_text("new"), overwrite=True)
    assert path.read_text() == "new"
    assert _mode(path) == 0o604


def test_an_existing_target_is_refused_unless_overwrite(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("keep")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        _atomic.write_atomically(path, _write_text("new"))
    assert path.read_text() == "keep"
    (tmp_path / "dir").mkdir()
    with pytest.raises(ValueError, match="expected a file"):
        _atomic.write_atomically(tmp_path / "dir", _write_text("new"), overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["dir", "out.txt"]


def test_a_target_that_appears_while_writing_is_not_clobbered(tmp_path):
    path = tmp_path / "out.txt"

    def write(temporary):
        path.write_text("someone else's")  # another writer, meanwhile
        _write_text("ours")(temporary)

    with pytest.raises(FileExistsError):
        _atomic.write_atomically(path, write)
    assert path.read_text() == "someone else's"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_directories_replace_only_what_may_be_replaced(tmp_path):
    def write(temporary):
        with open(os.path.join(temporary, "new.txt"), "w") as stream:
            stream.write("new")

    (tmp_path / "empty").mkdir()
    _atomic.write_atomically(tmp_path / "empty", write, overwrite=True, directory=True)
    assert os.listdir(tmp_path / "empty") == ["new.txt"]

    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="expected an empty directory"):
        _atomic.write_atomically(tmp_path / "precious", write, overwrite=True, directory=True)
    assert os.listdir(tmp_path / "precious") == ["notes.txt"]

    # With a predicate, a directory it accepts is swapped for the new one.
    _atomic.write_atomically(
        tmp_path / "precious", write, overwrite=True, directory=True,
        replaceable=lambda path: "notes.txt" in os.listdir(path), expected="notes",
    )
    assert os.listdir(tmp_path / "precious") == ["new.txt"]
    assert sorted(os.listdir(tmp_path)) == ["empty", "precious"]  # nothing left aside


def test_a_failed_write_leaves_the_old_target_and_no_temporaries(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    seen = []

    def failing(temporary):
        seen.append(temporary)
        _write_text("half")(temporary)
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        _atomic.write_atomically(path, failing, overwrite=True, suffix=".txt")
    assert os.path.basename(seen[0]).startswith(".out.txt.tmp-") and seen[0].endswith(".txt")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]

    # Parents created for the write are removed again.
    with pytest.raises(OSError, match="disk full"):
        _atomic.write_atomically(tmp_path / "a" / "b" / "out.txt", failing)
    assert os.listdir(tmp_path) == ["out.txt"]
    _atomic.write_atomically(tmp_path / "a" / "b" / "out.txt", _write_text("ok"))
    assert (tmp_path / "a" / "b" / "out.txt").read_text() == "ok"


@pytest.mark.parametrize("path", ["gs://bucket/model.keras", ".", "some/dir/..", 42])
def test_only_local_paths_naming_a_file_are_accepted(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative path that were accepted would land here
    with pytest.raises(ValueError, match=r"Received an invalid value for `--output`"):
        _atomic.write_atomically(path, _write_text("x"), argument="--output")
