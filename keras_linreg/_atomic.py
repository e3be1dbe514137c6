"""Atomic writes: a file or directory appears complete at its path, or not at all.

Used by every writer of the package (SavedModel exports, `.keras` saves, plots, the
command line's outputs), so a reader never sees half an artifact. New files and
directories get the permissions a plain `open()` / `os.mkdir()` would give under the
umask. Design notes: docs/design/atomic-writes.md.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import stat

__all__ = ["check_target", "local_path", "write_atomically"]


def local_path(path, argument="path") -> str:
    """`path` as an absolute local path, or a `ValueError` naming `argument`."""
    if not isinstance(path, (str, os.PathLike)) or "://" in os.fspath(path):
        raise ValueError(
            f"Received an invalid value for `{argument}`, expected a local filesystem "
            f"path (atomic writes rename within one directory). Received: {argument}={path!r}"
        )
    given = os.path.basename(os.fspath(path).rstrip("/" + os.sep))
    local = os.path.abspath(os.fspath(path))
    if given in ("", ".", "..") or os.path.basename(local) in ("", ".", ".."):
        raise ValueError(
            f"Received an invalid value for `{argument}`, expected a path naming a new "
            f"file or directory. Received: {argument}={path!r}"
        )
    return local


def check_target(target, overwrite, *, directory=False, replaceable=None, expected=None):
    """Refuses `target` before anything is written, unless it may be replaced.

    Args:
        target: The absolute path to write (see `local_path`).
        overwrite: If False, an existing `target` raises `FileExistsError`.
        directory: Whether the artifact is a directory (else a file).
        replaceable: For a directory, a predicate on an existing directory saying
            whether it may be replaced; defaults to "it is empty". Existing files
            are replaceable by files only, directories by directories only.
        expected: What may be replaced, for the error message.

    Raises:
        FileExistsError: `target` exists and `overwrite` is False.
        ValueError: `target` exists, `overwrite` is True, but it is not replaceable.
    """
    if not os.path.lexists(target):
        return
    if not overwrite:
        raise FileExistsError(
            f"Refusing to overwrite the existing {target!r}: pass overwrite=True to "
            "replace it, or choose a new path (e.g. the next version directory)."
        )
    if directory:
        replaceable = replaceable or (lambda path: not os.listdir(path))
        ok = os.path.isdir(target) and not os.path.islink(target) and replaceable(target)
        expected = expected or "an empty directory"
    else:
        ok = not os.path.isdir(target)
        expected = expected or "a file"
    if not ok:
        raise ValueError(
            f"Refusing to replace {target!r} with overwrite=True: expected {expected} "
            "there, so deleting it could lose data. Remove it yourself or choose "
            "another path."
        )


def write_atomically(
    path,
    write,
    *,
    overwrite=False,
    directory=False,
    replaceable=None,
    expected=None,
    suffix="",
    argument="path",
) -> str:
    """Calls `write(temporary)` for a hidden temporary beside `path`, then renames it there.

    The temporary is `.NAME.tmp-HEX` + `suffix` in `path`'s directory (missing
    parents are created, and removed again on failure). For a file it is created
    first, empty, with `open()`'s permissions (`0o666` less the umask), and `write`
    writes it; for a directory it is created with `os.mkdir`'s and `write` fills it.
    Then everything is flushed to disk and the temporary renamed to `path`: with
    `overwrite=True` a file replaces the old one in one `os.replace` (keeping the old
    file's permissions, as writing into it would), and a directory is swapped in after
    the old one is moved aside, which is deleted only afterwards. On any failure the
    temporary is removed and `path` is untouched.

    Args:
        path: Local path of the file or directory to write.
        write: Function of the temporary's path that writes the artifact there.
        overwrite, directory, replaceable, expected: See `check_target`.
        suffix: Ending of the temporary's name (e.g. `".keras"`, which Keras requires).
        argument: The argument's name, for error messages.

    Returns:
        The absolute path written.
    """
    target = local_path(path, argument)
    options = dict(directory=directory, replaceable=replaceable, expected=expected)
    check_target(target, overwrite, **options)
    parent, base = os.path.split(target)
    created = _make_parents(parent)
    tmp = None
    try:
        tmp = _reserve(parent, base, directory, suffix)
        write(tmp)
        _fsync_tree(tmp)
        check_target(target, overwrite, **options)  # again: something may have appeared
        if directory:
            _commit_dir(tmp, target)
        else:
            _commit_file(tmp, target, overwrite)
        tmp = None
        _fsync_dir(parent)
    except BaseException:
        if tmp is not None:
            _remove(tmp)
        for made in reversed(created):
            try:
                os.rmdir(made)
            except OSError:
                break
        raise
    return target


def _make_parents(parent):
    """Creates missing ancestors of `parent`; returns them, outermost first."""
    missing = []
    directory = parent
    while not os.path.isdir(directory):
        missing.append(directory)
        directory = os.path.dirname(directory)
    missing.reverse()
    created = []
    try:
        for directory in missing:
            os.mkdir(directory)
            created.append(directory)
    except BaseException:
        for directory in reversed(created):
            os.rmdir(directory)
        raise
    return created


def _reserve(parent, base, directory, suffix):
    """Creates a fresh hidden temporary beside the target, with the umask's permissions."""
    while True:
        path = os.path.join(parent, f".{base}.tmp-{secrets.token_hex(6)}{suffix}")
        try:
            if directory:
                os.mkdir(path)  # 0o777 & ~umask, as os.mkdir(target) would be
            else:
                # 0o666 & ~umask, as open(target, "w") would create it (mkstemp: 0o600).
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return path
        except FileExistsError:
            continue


def _make_fresh_dir(parent, base, tag):
    while True:
        path = os.path.join(parent, f".{base}.{tag}-{secrets.token_hex(6)}")
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue


def _commit_file(tmp, target, overwrite):
    if overwrite:
        try:  # the mode a write into the existing file would have kept
            os.chmod(tmp, stat.S_IMODE(os.stat(target).st_mode))
        except FileNotFoundError:
            pass
        os.replace(tmp, target)  # atomic: readers see the old file or the new one
        return
    try:
        os.link(tmp, target)  # atomic and never clobbers: fails if target exists
    except FileExistsError:
        raise
    except OSError:  # no hard links on this filesystem
        os.rename(tmp, target)
        return
    os.unlink(tmp)


def _commit_dir(tmp, target):
    if not os.path.lexists(target):
        try:
            os.rename(tmp, target)
        except OSError as error:  # another writer got there first
            if error.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR):
                raise FileExistsError(
                    f"Refusing to overwrite {target!r}, which appeared while writing it."
                ) from error
            raise
        return
    # Move the old one aside (into a fresh hidden directory, so the name is
    # free), put the new one in place, and only then delete the old one.
    parent, base = os.path.split(target)
    aside_root = _make_fresh_dir(parent, base, "old")
    aside = os.path.join(aside_root, base)
    try:
        os.rename(target, aside)
    except BaseException:
        os.rmdir(aside_root)
        raise
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(aside, target)
        os.rmdir(aside_root)
        raise
    shutil.rmtree(aside_root, ignore_errors=True)


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _fsync_tree(path):
    """Flushes `path` (a file, or a directory and everything in it) to disk."""
    if not os.path.isdir(path):
        _fsync(path, os.O_RDONLY)
        return
    for root, _, files in os.walk(path):
        for name in files:
            _fsync(os.path.join(root, name), os.O_RDONLY)
        _fsync_dir(root)


def _fsync_dir(path):
    _fsync(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))


def _fsync(path, flags):
    try:
        fd = os.open(path, flags)
    except OSError:  # e.g. directories cannot be opened on Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # e.g. some filesystems refuse fsync on directories
        pass
    finally:
        os.close(fd)
