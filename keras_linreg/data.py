"""Training data from CSV and Parquet files, as a `tf.data.Dataset` of whole batches.

`dataset_from_files` reads through pyarrow one CSV block or Parquet row group at a
time and re-batches the rows into `(x, y[, sample_weight])` batches, so memory stays
a few batches plus one read block whatever the files' size, and bad data is refused
with the file, row and column before the batch holding it is yielded. User guide:
docs/data.md.
"""

from __future__ import annotations

import collections
import contextlib
import glob
import os
import re
import threading
import warnings

import keras
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import tensorflow as tf

from keras_linreg import _sharding, inputs
from keras_linreg._sharding import (
    distributed_dataset_from_files,
    input_shard,
    sharded_least_squares,
)

__all__ = [
    "DataFileError",
    "dataset_from_files",
    "distributed_dataset_from_files",
    "input_shard",
    "raising_file_errors",
    "sharded_least_squares",
]

_CSV_SUFFIXES = (".csv", ".csv.gz")
_PARQUET_SUFFIXES = (".parquet",)
_GLOB_CHARACTERS = "*?["
# Bytes pyarrow's CSV reader parses at a time (its own default is 1 MiB).
_CSV_BLOCK_BYTES = 4 << 20
# Delimiters a header line is sniffed for when it looks like one column.
_DELIMITERS = (",", ";", "\t", "|")
_CSV_ROW = "data row {row} (1-based, counting the records after the header)"
_PARQUET_ROW = "row {row} (1-based, in file order)"
# The shuffle buffer, in batches, when `shuffle_buffer_size` is not given.
_SHUFFLE_BUFFER_BATCHES = 4
# Batches read ahead of the model (`Dataset.prefetch`).
_PREFETCH_BATCHES = 4
# Passes (iterators) of one dataset held open at once; the least recently used
# unfinished one is closed (and read again from the start if it is asked for more).
_OPEN_PASSES = 4
# Passes remembered (by pass number) to be read again.
_MAX_PASSES = 1 << 16
# The batches of a pass of unknown length are indexed from a range this long.
_UNBOUNDED = 1 << 62
# Errors raised inside `tf.data` reach the caller as `tf.errors.OpError`s with the
# message inside; the last few are kept to be raised again as themselves.
_RECENT_ERRORS = collections.deque(maxlen=8)


class DataFileError(ValueError):
    """Bad data in a file: the message names the file, the row and the column.

    Attributes:
        path: The file.
        row: The 1-based data row (CSV: records after the header; Parquet: rows
            in file order), or None when the problem is not one row's.
        column: The column's name, or None.
        problem: For a bad value, what is wrong with it, a phrase such as
            "is not a number", "is missing", "is not finite (NaN or ±inf)",
            "is outside float32's finite range ..."; else None.
        value: The bad value as read (a string or a number), or None.
    """

    def __init__(self, message, *, path, row=None, column=None, problem=None, value=None):
        super().__init__(message)
        self.path, self.row, self.column = path, row, column
        self.problem, self.value = problem, value


def dataset_from_files(
    paths,
    *,
    target,
    features=None,
    sample_weight=None,
    batch_size=65536,
    shuffle=False,
    seed=None,
    shuffle_buffer_size=None,
    delimiter=",",
    decimal_point=".",
    encoding="utf8",
    drop_missing=False,
    shard=None,
):
    """A `tf.data.Dataset` of whole batches read from CSV and Parquet files.

    Each element is one batch, `(x, y)` or `(x, y, sample_weight)`: `x` float32
    of shape `(batch, n_features)` with the columns in `features` order, `y` and
    `sample_weight` float32 of shape `(batch,)`. Batches hold `batch_size` rows,
    the last one the rest. Pass it to `LinearRegression.fit` (and `evaluate`,
    `predict`, `validation_data=`, `adapt`) like any batched dataset:

    ```python
    data = keras_linreg.data.dataset_from_files("data/*.parquet", target="price")
    model.fit(data, epochs=5)
    ```

    Files are read by extension: `.csv` and `.csv.gz` with pyarrow's streaming
    CSV reader (one block of a few MiB at a time, the column types fixed by a
    first schema pass), `.parquet` one row group at a time. Memory is a few
    batches plus one read block (a CSV block, or a Parquet row group), however
    large the files.

    Schema rules:

    - Every file needs a header (CSV) or named columns (Parquet); a CSV whose
      first line is all numbers is refused. A UTF-8 byte-order mark is not
      part of the first column's name.
    - The default `features` are the numeric columns (integers, floats,
      booleans, or all missing in the inferred block) of the first file other
      than `target` and `sample_weight`, in file order, decided from the
      column types: Parquet's stored schema, or the types pyarrow infers from
      the first CSV block (so `NA` in the first data row does not drop a
      column). Other files must have those columns (in any order).
    - Missing values (an empty field, `NA`, `NaN`, `null`, ... : pyarrow's
      null markers) are an error unless `drop_missing=True`, which drops the
      rows with one in a used column. `inf` parses as a number and is refused
      as non-finite.

    Args:
        paths: A file path, a glob (`"data/*.parquet"`, expanded sorted), or a
            list of paths and globs (kept in the list's order).
        target: Name of the target column, or None for batches of `x` only
            (for `predict` on unlabelled files).
        features: Optional sequence of feature column names, in the order of
            `x`'s columns. Defaults to the numeric columns described above.
        sample_weight: Optional name of a column of non-negative row weights.
        batch_size: Rows per batch, a positive integer. Defaults to 65536.
        shuffle: If True, each pass over the dataset reads the files (and a
            Parquet file's row groups) in a new random order and shuffles the
            rows within a buffer of `shuffle_buffer_size` rows. This is a
            buffered shuffle like `tf.data.Dataset.shuffle`'s (each batch is
            drawn uniformly from the buffer), not a global permutation: rows
            move at most about a buffer's length. Defaults to False (file order).
        seed: Optional integer seed for `shuffle`. Pass `k` of a dataset made
            with the same seed sees the same order, and passes differ from each
            other (pass `k` is seeded by `(seed, k)`). Defaults to a random seed.
        shuffle_buffer_size: Rows in the shuffle buffer. Defaults to
            `4 * batch_size`.
        delimiter: CSV field delimiter (pyarrow's `ParseOptions.delimiter`),
            e.g. `";"` or `"\\t"`. Defaults to `","`.
        decimal_point: CSV decimal separator (pyarrow's
            `ConvertOptions.decimal_point`), e.g. `","`. Defaults to `"."`.
        encoding: CSV text encoding (pyarrow's `ReadOptions.encoding`).
            Defaults to `"utf8"`.
        drop_missing: If True, rows with a missing value in a used column are
            dropped instead of refused. Defaults to False.
        shard: Optional `(index, count)`: read only shard `index` of `count`
            (e.g. a `tf.distribute.InputContext`'s `input_pipeline_id` and
            `num_input_pipelines`). The files are cut into units, a whole CSV
            file or one Parquet row group, numbered in file order; unit `j`
            belongs to shard `j % count`. Every shard sees the same schema
            rules and default `features` (from all files), so all shards'
            batches have the same columns; a shard may be empty. A sharded
            dataset's length is unknown (workers' shards differ). Defaults to
            None (all files). See docs/data.md, "Scaling out over files".

    Returns:
        A `tf.data.Dataset` whose element spec is
        `(TensorSpec((None, n_features), float32), TensorSpec((None,), float32)[,
        TensorSpec((None,), float32)])`.

    Raises:
        ValueError: at once, for bad arguments, no or unknown files, a missing
            column (named, with the available ones), a CSV without a header or
            with another delimiter than `delimiter` (suggesting the right one).
        DataFileError: (a `ValueError`) while iterating, for a non-numeric,
            missing or non-finite value, a value outside float32's range, a
            negative weight, or a ragged CSV row, naming the file, the 1-based
            data row and the column, before the batch holding it is yielded.
            `LinearRegression`'s `fit`, `evaluate`, `predict` and `adapt` raise
            it as it is; iterating the dataset yourself, it arrives wrapped in a
            `tf.errors.InvalidArgumentError` (see `raising_file_errors`).
    """
    _check_positive_int(batch_size, "batch_size")
    if shuffle_buffer_size is None:
        shuffle_buffer_size = _SHUFFLE_BUFFER_BATCHES * batch_size
    _check_positive_int(shuffle_buffer_size, "shuffle_buffer_size")
    if not isinstance(shuffle, bool):
        raise ValueError(
            "Received an invalid value for `shuffle`, expected a bool. "
            f"Received: shuffle={shuffle!r}"
        )
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                             or seed < 0):
        raise ValueError(
            "Received an invalid value for `seed`, expected a non-negative integer or "
            f"None. Received: seed={seed!r}"
        )
    for name, value in (("delimiter", delimiter), ("decimal_point", decimal_point)):
        if not isinstance(value, str) or len(value) != 1:
            raise ValueError(
                f"Received an invalid value for `{name}`, expected one character. "
                f"Received: {name}={value!r}"
            )
    if not isinstance(drop_missing, bool):
        raise ValueError(
            "Received an invalid value for `drop_missing`, expected a bool. "
            f"Received: drop_missing={drop_missing!r}"
        )
    options = _CsvOptions(delimiter, decimal_point, encoding)
    shard = _sharding.check_shard(shard)
    files = _expand_paths(paths)
    schemas = [_read_schema(path, options) for path in files]
    plan = _plan_columns(files[0], *schemas[0], target, features, sample_weight)
    schemas = [schema for schema, _ in schemas]
    for path, schema in zip(files, schemas, strict=True):
        _check_columns(path, schema, plan)
    groups = None  # per file: the Parquet row groups to read, None for all
    if shard is not None:
        units = _sharding.shard_units(files, [_format(path) == "parquet" for path in files], shard)
        files, schemas = [files[i] for i, _ in units], [schemas[i] for i, _ in units]
        groups = [unit_groups for _, unit_groups in units]
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (1 << 63))
    reader = _Reader(
        files, schemas, plan, options, batch_size, shuffle, int(seed),
        shuffle_buffer_size, drop_missing, groups,
    )
    vector = tf.TensorSpec((None,), tf.float32)
    signature = (tf.TensorSpec((None, len(plan.features)), tf.float32),)
    if plan.target is not None:
        signature += (vector,)
    if plan.weight is not None:
        signature += (vector,)
    # A shard's length is left unknown: under tf.distribute the workers' shards
    # differ in length, and an epoch ends when all of them are exhausted.
    rows = None if shard is not None else _known_rows(files, drop_missing, groups)
    # With the rows known, Keras knows the steps per epoch (and shows them).
    dataset = _batch_dataset(reader, signature, None if rows is None else -(-rows // batch_size))
    dataset = dataset.prefetch(_PREFETCH_BATCHES)  # read ahead while the model trains
    # Nothing here for tf.data's autotuner to tune (a fixed prefetch, no parallel
    # map); its thread per iterator made destroying a MirroredStrategy's
    # multi-device iterators wait for its next wake-up (up to a minute).
    options = tf.data.Options()
    options.autotune.enabled = False
    dataset = dataset.with_options(options)
    # Its NumPy batches for `least_squares`/`ols` (`inputs.batches`) and the command
    # line, and its passes and the rows it held, for tests.
    setattr(dataset, inputs.FILE_READER_ATTRIBUTE, reader)
    # How `fit` recognises it (`inputs.is_file_dataset`) and names the features.
    setattr(dataset, inputs.FILE_FEATURES_ATTRIBUTE, tuple(plan.features))
    return dataset


def _batch_dataset(reader, signature, steps=None):
    """The `tf.data.Dataset` of `reader`'s batches: one `numpy_function` call per batch.

    Like `Dataset.from_generator`, each iterator gets its own pass of `reader`
    (its id is the state of a `scan`, drawn at the iterator's first element),
    but with less overhead per element (measured about 2 times less than
    `from_generator`'s generator op here). With `steps` known, the dataset is
    that many batches; else a pass ends at an empty sentinel batch (`take_while`).
    """
    passes = _Passes(reader, signature, steps)
    dtypes = [tf.int64] + [spec.dtype for spec in signature]

    def step(pass_id, index):
        pass_id, *parts = tf.numpy_function(passes.next, [pass_id, index], dtypes,
                                            stateful=True)  # fmt: skip
        pass_id.set_shape(())
        for part, spec in zip(parts, signature, strict=True):
            part.set_shape(spec.shape)
        return pass_id, tuple(parts) if len(parts) > 1 else parts[0]

    def not_the_end(x, *_):
        return tf.shape(x)[0] > 0

    indices = tf.data.Dataset.range(_UNBOUNDED if steps is None else steps)
    dataset = indices.scan(np.int64(-1), step)
    return dataset.take_while(not_the_end) if steps is None else dataset


class _Passes:
    """The passes of a reader under way, one per `tf.data` iterator, by id.

    At most `_OPEN_PASSES` are held open (a pass holds a read block); an iterator
    that was abandoned (`take`, `next(iter(dataset))`, a loop left early) cannot be
    told from a slow one, so the least recently used is closed when a new pass
    starts, and if its iterator asks for its next batch after all, the pass is
    read again from the start (same pass number, so the same shuffle) up to there.

    Each iterator calls `next` from its own `tf.data` thread, and pyarrow lets go
    of the GIL while it reads, so one lock makes every call whole: without it one
    iterator's new pass could close (evict) the generator another thread is
    running ("generator already executing"), or two new passes draw one number.
    """

    def __init__(self, reader, signature, steps):
        self.lock = threading.Lock()
        self.reader, self.steps = reader, steps
        self.open = collections.OrderedDict()  # pass id -> (pass number, generator, next index)
        self.numbers = collections.OrderedDict()  # pass id -> pass number, closed ones too
        self.count = 0
        # The sentinel that ends a pass of unknown length: a batch of no rows.
        self.end = [np.zeros((0, *(d or 0 for d in spec.shape[1:])), np.float32)
                    for spec in signature]

    def _generator(self, pass_id, index):
        """The pass's generator, positioned at batch `index`."""
        held = self.open.get(pass_id)
        if held is not None and held[1] == index:
            self.open.move_to_end(pass_id)
            return held[0]
        if held is not None:
            held[0].close()
        number = self.numbers.get(pass_id)
        if number is None:
            raise RuntimeError(
                f"Received a request for batch {index} of a dataset_from_files pass "
                f"that is no longer known: more than {_MAX_PASSES} iterators were made "
                "since, expected fewer."
            )
        batches = self.reader(number)
        for _ in range(index):  # read again up to `index`
            next(batches)
        self.open[pass_id] = (batches, index)
        while len(self.open) > _OPEN_PASSES:
            self.open.popitem(last=False)[1][0].close()
        return batches

    def _finish(self, pass_id):
        self.open.pop(pass_id, None)
        self.numbers.pop(pass_id, None)

    def next(self, pass_id, index):
        """`[pass id, *batch]`: batch `index` of the pass (a new pass for id -1)."""
        with self.lock:
            return self._next(int(pass_id), int(index))

    def _next(self, pass_id, index):
        if pass_id < 0:
            pass_id = self.count
            self.count += 1
            self.numbers[pass_id] = self.reader.passes
            self.reader.passes += 1
            while len(self.numbers) > _MAX_PASSES:
                self.numbers.popitem(last=False)
        try:
            batches = self._generator(pass_id, index)
            batch = next(batches, None)
            self.open[pass_id] = (batches, index + 1)
            if self.steps is None:
                if batch is None:
                    self._finish(pass_id)
            elif batch is None or (index == self.steps - 1 and next(batches, None) is not None):
                raise RuntimeError(
                    f"Received files whose rows changed while reading: their metadata "
                    f"gave {self.steps} batches, but a pass read "
                    f"{index if batch is None else 'more'}."
                )
            elif index == self.steps - 1:
                self._finish(pass_id)
        except BaseException:
            self._finish(pass_id)
            raise
        if batch is None:
            return [np.int64(pass_id), *self.end]
        return [np.int64(pass_id), *(batch if isinstance(batch, tuple) else (batch,))]


class _EpochPasses(keras.callbacks.Callback):
    """In `fit`, epoch `e` of a `dataset_from_files` dataset reads its pass `base + e`.

    `base` is the passes the dataset had made when `fit` began. Keras makes a new
    iterator (a new pass) for each epoch, so a fresh dataset's epoch `e` is pass
    `e` anyway, unless the run resumes: a process restarted under
    `BackupAndRestore` builds a new dataset and continues at epoch `k`, and
    without this its epoch `k` would read pass 0 (a shuffled dataset's first
    order) instead of pass `k`. The shuffled orders, and so the resumed weights,
    are then those of the run that was not interrupted.
    """

    def __init__(self, reader):
        super().__init__()
        self.reader, self.base = reader, reader.passes

    def on_epoch_begin(self, epoch, logs=None):
        self.reader.passes = self.base + int(epoch)


def epoch_passes(x, fit_arguments):
    """An `_EpochPasses` for `fit(x, **fit_arguments)`, or None where it does not apply:
    `x` not a `dataset_from_files` dataset, or `steps_per_epoch` given (Keras then
    keeps one iterator across epochs, and passes do not follow epochs)."""
    reader = getattr(x, inputs.FILE_READER_ATTRIBUTE, None) if inputs.is_file_dataset(x) else None
    if reader is None or fit_arguments.get("steps_per_epoch") is not None:
        return None
    return _EpochPasses(reader)


@contextlib.contextmanager
def raising_file_errors(*data):
    """Raises a `DataFileError` from inside `tf.data` as itself, not as an `OpError`.

    A Python error inside a `tf.data` pipeline reaches the caller as a
    `tf.errors.InvalidArgumentError` whose message holds the original with a
    traceback. Within this context, one whose message holds a recent
    `DataFileError`'s is replaced by that error. `LinearRegression`'s `fit`,
    `evaluate`, `predict` and `adapt` run in it.

    When one of `data` is a `dataset_from_files` dataset of unknown length (CSV
    files, `drop_missing=True`, a shard; or `distributed_dataset_from_files`),
    Keras' warning that the input "ran out of
    data" is silenced: such a dataset ends each pass at the end of its files, and
    Keras warns at the end of every unknown-length dataset.
    """
    with warnings.catch_warnings():
        if any(inputs.is_file_dataset(value) or getattr(value, _sharding.SHARDED_FILES, False)
               for value in data):
            warnings.filterwarnings("ignore", message="Your input ran out of data")
        with _reraising():
            yield


@contextlib.contextmanager
def _reraising():
    try:
        yield
    except tf.errors.OpError as error:
        message = error.message or ""
        for recent in reversed(_RECENT_ERRORS):
            if str(recent) in message:
                raise recent from None
        raise


# ------------------------------------------------------------------- arguments
def _check_positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(
            f"Received an invalid value for `{name}`, expected a positive integer. "
            f"Received: {name}={value!r}"
        )


class _CsvOptions:
    """pyarrow's CSV options for `delimiter`, `decimal_point` and `encoding`."""

    def __init__(self, delimiter, decimal_point, encoding):
        self.delimiter, self.decimal_point, self.encoding = delimiter, decimal_point, encoding

    def read(self, use_threads=True):
        return pa_csv.ReadOptions(
            encoding=self.encoding, block_size=_CSV_BLOCK_BYTES, use_threads=use_threads
        )

    def parse(self, invalid_row_handler=None):
        return pa_csv.ParseOptions(
            delimiter=self.delimiter, invalid_row_handler=invalid_row_handler
        )

    def convert(self, column_types=None, include_columns=None, strings_can_be_null=False):
        return pa_csv.ConvertOptions(
            column_types=column_types,
            include_columns=include_columns,
            decimal_point=self.decimal_point,
            strings_can_be_null=strings_can_be_null,
        )


def _expand_paths(paths):
    """The files of `paths` (a path, a glob, or a list of them), each checked."""
    if isinstance(paths, (str, os.PathLike)):
        items = [paths]
    elif isinstance(paths, (list, tuple)) and paths:
        items = list(paths)
    else:
        raise ValueError(
            "Received an invalid value for `paths`, expected a file path, a glob or a "
            f"non-empty list of them. Received: paths={paths!r}"
        )
    files = []
    for item in items:
        if not isinstance(item, (str, os.PathLike)):
            raise ValueError(
                "Received an invalid value for `paths`, expected file paths or globs "
                f"(strings). Received: {item!r} in paths={paths!r}"
            )
        item = os.fspath(item)
        if any(character in item for character in _GLOB_CHARACTERS):
            matches = sorted(glob.glob(item))
            if not matches:
                raise ValueError(
                    f"Received a glob that matches no file. Received: paths={item!r}"
                )
            files.extend(matches)
        elif not os.path.isfile(item):
            raise ValueError(f"Received a path that is not a file. Received: paths={item!r}")
        else:
            files.append(item)
    for path in files:
        _format(path)
    return files


def _format(path):
    lower = path.lower()
    if lower.endswith(_CSV_SUFFIXES):
        return "csv"
    if lower.endswith(_PARQUET_SUFFIXES):
        return "parquet"
    raise ValueError(
        f"Received a file of unknown format, expected one ending in "
        f"{', '.join(_CSV_SUFFIXES + _PARQUET_SUFFIXES)}. Received: {path!r}"
    )


# --------------------------------------------------------------------- schemas
def _read_schema(path, options):
    """`(schema, suspects)`: the file's `pa.Schema` (Parquet's stored one, or
    pyarrow's inference on the first CSV block) and, for a CSV, the errors for text
    columns that are mostly numbers by name. Refuses a CSV without a header or with
    another delimiter."""
    suspects = {}
    if _format(path) == "parquet":
        try:
            return pq.ParquetFile(path).schema_arrow, suspects
        except (pa.ArrowException, OSError) as error:
            raise ValueError(f"Could not read the Parquet file {path!r}: {error}") from None
    try:
        reader = pa_csv.open_csv(
            path,
            read_options=options.read(),
            parse_options=options.parse(),
            convert_options=options.convert(),
        )
    except pa.ArrowInvalid as error:
        _suggest_delimiter(path, options, None)
        if "Empty CSV file" in str(error):
            raise ValueError(
                f"Received an empty CSV file, expected a header line and data rows. "
                f"Received: {path!r}"
            ) from None
        if "Expected" in str(error) and "columns, got" in str(error):
            raise _locate_csv_error(path, None, None, options, error) from None
        raise ValueError(f"Could not read the CSV file {path!r}: {error}") from None
    except UnicodeDecodeError as error:
        raise ValueError(
            f"Could not decode the CSV file {path!r} as encoding={options.encoding!r} "
            f"({error}). Pass its encoding, e.g. `encoding='latin-1'`."
        ) from None
    schema = reader.schema
    try:
        first = reader.read_next_batch()
    except (StopIteration, pa.ArrowInvalid):  # no data rows, or an error found later
        first = None
    reader.close()
    _suggest_delimiter(path, options, schema.names)
    if all(_is_number(name, options.decimal_point) for name in schema.names):
        raise ValueError(
            f"Received a CSV file without a header: its first line "
            f"{options.delimiter.join(schema.names)!r} holds only numbers, expected column "
            f"names. Add a header line naming the columns. Received: {path!r}"
        )
    if first is not None:
        for field in schema:
            if pa.types.is_string(field.type):
                error = _mostly_numbers_error(path, field.name, first.column(field.name))
                if error is not None:
                    suspects[field.name] = error
    return schema, suspects


# A number as a CSV field may write it, with either decimal separator.
_NUMBER_PATTERN = r"^\s*[-+]?(\d+([.,]\d*)?|[.,]\d+)([eE][-+]?\d+)?\s*$"


def _mostly_numbers_error(path, name, column):
    """The error for a column pyarrow reads as text that is mostly numbers in the
    first block, or None.

    Such a column would silently drop out of the default features because of a few
    bad values; naming the first of them is better. A text column of codes or names
    (few values that look like numbers) is not suspect.
    """
    present = pc.drop_null(column)
    looks = pc.match_substring_regex(present, _NUMBER_PATTERN)
    numbers = pc.sum(looks).as_py() or 0
    if numbers == 0 or numbers * 2 < len(present):
        return None
    if numbers == len(present):  # all numbers with the other decimal separator
        row = 1 + int(np.argmax(np.asarray(column.is_valid())))
        return _value_error(path, row, name, "is not a number", column[row - 1].as_py())
    valid = np.asarray(column.is_valid())
    matches = np.zeros(len(column), dtype=bool)
    matches[valid] = np.asarray(looks)
    row = int(np.argmax(valid & ~matches))
    return DataFileError(
        f"Received a column that is mostly numbers but read as text, in file {path!r}, "
        f"column {name!r}: {_CSV_ROW.format(row=row + 1)} holds {column[row].as_py()!r}, "
        "which is not a number. Fix the value, or pass `features=` without this "
        "column (a text column is not a default feature).",
        path=path, row=row + 1, column=name, problem="is not a number",
        value=column[row].as_py(),
    )


def _is_number(text, decimal_point):
    try:
        float(text.strip().replace(decimal_point, "."))
    except ValueError:
        return False
    return True


def _suggest_delimiter(path, options, names):
    """Raises, suggesting `delimiter=`, if the header plainly uses another delimiter:
    it parsed as one column (or not at all) and holds another candidate."""
    if names is not None and len(names) > 1:
        return
    line = _first_line(path, options.encoding)
    counts = {d: line.count(d) for d in _DELIMITERS if d != options.delimiter}
    best = max(counts, key=counts.get)
    if counts[best]:
        raise ValueError(
            f"Received a CSV file whose header {line!r} reads as one column with "
            f"delimiter={options.delimiter!r}, but it holds {counts[best]} {best!r}: pass "
            f"`delimiter={best!r}`"
            + (" (and `decimal_point=','` if it writes decimal commas)" if best == ";" else "")
            + f". Received: {path!r}"
        )


def _first_line(path, encoding):
    with pa.input_stream(path, compression="detect") as stream:
        head = stream.read(1 << 16)
    text = head.decode(encoding, errors="replace").lstrip("\ufeff")
    return text.splitlines()[0] if text else ""


def _is_numeric_type(type_):
    return (
        pa.types.is_integer(type_)
        or pa.types.is_floating(type_)
        or pa.types.is_boolean(type_)
        or pa.types.is_decimal(type_)
        or pa.types.is_null(type_)
    )


class _Plan:
    """The columns read: `features`, `target` and `weight` (None when not used)."""

    def __init__(self, features, target, weight):
        self.features, self.target, self.weight = list(features), target, weight
        self.columns = self.features + [c for c in (target, weight) if c is not None]


def _plan_columns(path, schema, suspects, target, features, sample_weight):
    for name, value in (("target", target), ("sample_weight", sample_weight)):
        if value is not None and not isinstance(value, str):
            raise ValueError(
                f"Received an invalid value for `{name}`, expected a column name (a "
                f"string){' or None' if name == 'sample_weight' else ''}. "
                f"Received: {name}={value!r}"
            )
    if target is not None and target == sample_weight:
        raise ValueError(
            "Received the same column as `target` and `sample_weight`, expected two "
            f"different columns. Received: target={target!r}, sample_weight={sample_weight!r}"
        )
    reserved = {target, sample_weight} - {None}
    if features is None:
        for name, error in suspects.items():
            if name not in reserved:
                raise error
        features = [
            field.name
            for field in schema
            if field.name not in reserved and _is_numeric_type(field.type)
        ]
        if not features:
            raise ValueError(
                f"Received a file with no numeric column besides target={target!r} and "
                f"sample_weight={sample_weight!r} to use as features; its columns are "
                f"{_describe(schema)}. Received: {path!r}"
            )
    else:
        if isinstance(features, str) or not all(isinstance(f, str) for f in features):
            raise ValueError(
                "Received an invalid value for `features`, expected a list of column "
                f"names. Received: features={features!r}"
            )
        features = list(features)
        if not features or len(set(features)) != len(features) or reserved & set(features):
            raise ValueError(
                "Received an invalid value for `features`, expected a non-empty list of "
                "distinct column names other than `target` and `sample_weight`. "
                f"Received: features={features!r}"
            )
    return _Plan(features, target, sample_weight)


def _describe(schema):
    return "[" + ", ".join(f"{field.name!r} ({field.type})" for field in schema) + "]"


def _check_columns(path, schema, plan):
    names = schema.names
    for column in plan.columns:
        count = names.count(column)
        if count == 0:
            role = (
                "target" if column == plan.target
                else "sample_weight" if column == plan.weight
                else "features"
            )
            received = plan.features if role == "features" else column
            raise ValueError(
                f"Received {role}={received!r}, "
                f"but the file {path!r} has no column {column!r}. Available columns: "
                f"{names!r}"
            )
        if count > 1:
            raise ValueError(
                f"Received a file with {count} columns named {column!r}, expected unique "
                f"column names. Received: {path!r}"
            )
        type_ = schema.field(column).type
        if _format(path) == "parquet" and not (
            _is_numeric_type(type_) or pa.types.is_string(type_)
            or pa.types.is_large_string(type_)
        ):
            raise ValueError(
                f"Received a Parquet file whose column {column!r} has type {type_}, "
                f"expected numbers (integers, floats or booleans). Received: {path!r}"
            )


def _known_rows(files, drop_missing, groups=None):
    """The rows of Parquet files (or of their row groups `groups`) from their
    metadata; None for CSV or dropping rows."""
    if drop_missing or any(_format(path) != "parquet" for path in files):
        return None
    total = 0
    for i, path in enumerate(files):
        metadata = pq.ParquetFile(path).metadata
        if groups is None or groups[i] is None:
            total += metadata.num_rows
        else:
            total += sum(metadata.row_group(g).num_rows for g in groups[i])
    return total


# ---------------------------------------------------------------------- reading
class _Reader:
    """One pass over the files per call: a generator of `(x, y[, w])` NumPy batches."""

    def __init__(self, files, schemas, plan, options, batch_size, shuffle, seed,
                 buffer_size, drop_missing, groups=None):
        self.files, self.schemas, self.plan, self.options = files, schemas, plan, options
        self.groups = groups  # per file: the Parquet row groups of this shard, or None
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.buffer_size, self.drop_missing = buffer_size, drop_missing
        self.passes = 0
        # The most rows held at once (batcher or shuffle buffer plus one read block).
        self.peak_rows_held = 0
        # The rows of all the batches yielded so far, over all passes (progress lines).
        self.rows_read = 0

    def __call__(self, number=None):
        """Pass `number` (default: the next one, counted in `passes`), a generator."""
        if number is None:
            number = self.passes
            self.passes += 1
        rng = np.random.default_rng([self.seed, number]) if self.shuffle else None
        order = list(range(len(self.files)))
        if rng is not None:
            order = [int(i) for i in rng.permutation(len(self.files))]
        pool = _Pool(self.batch_size, self.buffer_size, rng)
        try:
            for index in order:
                groups = None if self.groups is None else self.groups[index]
                for block in self._blocks(self.files[index], self.schemas[index], rng, groups):
                    pool.add(block)
                    self.peak_rows_held = max(self.peak_rows_held, pool.rows)
                    for batch in pool.batches():
                        self.rows_read += len(batch[0])
                        yield batch if len(batch) > 1 else batch[0]
            for batch in pool.rest():
                self.rows_read += len(batch[0])
                yield batch if len(batch) > 1 else batch[0]
        except DataFileError as error:
            _RECENT_ERRORS.append(error)
            raise

    def _blocks(self, path, schema, rng, groups=None):
        """The file's rows (of `groups`, Parquet row groups) as `(x, y[, w])`
        float32 arrays, one tuple per read block, checked."""
        tables = (
            _parquet_tables(path, self.plan, rng, groups) if _format(path) == "parquet"
            else _csv_tables(path, schema, self.plan, self.options)
        )
        for start, table in tables:
            parts = self._convert(path, table, start)
            if len(parts[0]):
                yield parts

    def _convert(self, path, table, start):
        """`table`'s used columns as float32 arrays `(x, y[, w])`, checked.

        `x` is a C-ordered `(rows, n_features)` matrix (its row slices are
        contiguous batches); the target and weight columns stay vectors,
        float32 columns as pyarrow holds them (no copy).

        Every value must be present (unless `drop_missing`), and pass
        `inputs.first_invalid_value`; the first bad one in file order (then
        column order) raises, naming its 1-based row (`start` rows came before).
        """
        plan = self.plan
        columns = [table.column(name) for name in plan.columns]
        rows = None  # the rows of the block kept: all, unless dropping
        problems = []
        if any(column.null_count for column in columns):
            missing = np.zeros(table.num_rows, dtype=bool)
            for j, column in enumerate(columns):
                if column.null_count:
                    nulls = np.asarray(column.is_null())
                    missing |= nulls
                    problems.append((int(np.argmax(nulls)), j, "is missing", None))
            if self.drop_missing:
                problems, rows = [], np.flatnonzero(~missing)
        kept = table.num_rows if rows is None else len(rows)
        k = len(plan.features)
        x = np.empty((kept, k), dtype=np.float32)
        parts = [x]
        for j, column in enumerate(columns):
            values = _to_float64(path, table, plan.columns[j], column, start)
            if rows is not None:
                values = values[rows]
            weight = plan.columns[j] == plan.weight
            invalid = inputs.first_invalid_value(values, non_negative=weight)
            if invalid is not None:
                row = invalid[0] if rows is None else int(rows[invalid[0]])
                problems.append((row, j, invalid[1], values[invalid[0]]))
            elif problems:
                pass
            elif j < k:
                x[:, j] = values
            else:
                parts.append(values.astype(np.float32, copy=False))
        if problems:
            row, j, problem, value = min(problems, key=lambda p: (p[0], p[1]))
            raise _value_error(path, start + row + 1, plan.columns[j], problem, value)
        return tuple(parts)


def _csv_types(schema, plan):
    """The types the CSV reader converts the used columns to, fixed by the schema
    pass: float64, or bool where pyarrow inferred booleans."""
    return {
        name: pa.bool_() if pa.types.is_boolean(schema.field(name).type) else pa.float64()
        for name in plan.columns
    }


def _csv_tables(path, schema, plan, options):
    """`(first row, table)` of the used columns of a CSV file, one pyarrow block at
    a time; the first row is 0-based."""
    types = _csv_types(schema, plan)
    try:  # opening reads and converts the first block: its errors arrive here
        reader = pa_csv.open_csv(
            path,
            read_options=options.read(),
            parse_options=options.parse(),
            convert_options=options.convert(column_types=types, include_columns=plan.columns),
        )
    except pa.ArrowInvalid as error:
        raise _locate_csv_error(path, plan, types, options, error) from None
    start = 0
    with contextlib.closing(reader):
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except pa.ArrowInvalid as error:
                raise _locate_csv_error(path, plan, types, options, error) from None
            yield start, batch
            start += batch.num_rows


def _parquet_tables(path, plan, rng, groups=None):
    """`(first row, table)` of the used columns of a Parquet file, one row group at
    a time (the row groups `groups`, default all; in a random order when
    shuffling); rows are numbered in file order. `read_row_group`, not
    `iter_batches`, which reads ahead the whole file."""
    parquet = pq.ParquetFile(path)
    count = parquet.num_row_groups
    offsets = np.cumsum([0] + [parquet.metadata.row_group(i).num_rows for i in range(count)])
    groups = list(range(count)) if groups is None else list(groups)
    if rng is not None:
        groups = [groups[int(i)] for i in rng.permutation(len(groups))]
    for i in groups:
        yield int(offsets[i]), parquet.read_row_group(i, columns=plan.columns)


def _to_float64(path, table, name, column, start):
    """A column as float64 (or float32, as stored) NumPy values, nulls as NaN; a
    string column is parsed, and a value that is not a number raises naming its row."""
    if column.type not in (pa.float64(), pa.float32()):  # float32: checked and kept as is
        try:
            column = pc.cast(column, pa.float64())
        except pa.ArrowInvalid:
            strings = pc.cast(column, pa.string()).to_pylist()
            for row, text in enumerate(strings):
                if text is not None and not _is_number(text, "."):
                    raise _value_error(
                        path, start + row + 1, name, "is not a number", text
                    ) from None
            raise
    return column.to_numpy(zero_copy_only=False)


# ---------------------------------------------------------------------- batching
class _Pool:
    """Rows waiting to be batched, as `(x, y[, w])` chunks: in order, or a shuffle buffer.

    In order, full batches leave as soon as there are enough rows, as views of
    a chunk when it holds the whole batch (a copy only for a batch that
    straddles two chunks). Shuffling, the rows wait until the pool holds
    `buffer_size + batch_size`; each batch is then a uniformly random choice of
    `batch_size` of them (what `tf.data`'s shuffle buffer does one element at a
    time), and at the end the rest leave shuffled.
    """

    def __init__(self, batch_size, buffer_size, rng):
        self.batch_size, self.buffer_size, self.rng = batch_size, buffer_size, rng
        self.chunks = collections.deque()
        self.offset = 0  # rows of the first chunk already batched
        self.rows = 0  # rows not yet batched

    def add(self, parts):
        self.chunks.append(parts)
        self.rows += len(parts[0])

    def _take(self, count):
        """The next `count` rows in order, as one tuple of arrays."""
        pieces = []
        while count:
            parts = self.chunks[0]
            available = len(parts[0]) - self.offset
            taken = min(available, count)
            pieces.append(tuple(part[self.offset : self.offset + taken] for part in parts))
            count -= taken
            self.rows -= taken
            if taken == available:
                self.chunks.popleft()
                self.offset = 0
            else:
                self.offset += taken
        if len(pieces) == 1:
            return pieces[0]
        return tuple(np.concatenate(column) for column in zip(*pieces, strict=True))

    def batches(self):
        size = self.batch_size
        if self.rng is None:
            while self.rows >= size:
                yield self._take(size)
            return
        while self.rows >= self.buffer_size + size:
            data = self._take(self.rows)
            order = self.rng.permutation(len(data[0]))
            yield tuple(part[order[:size]] for part in data)
            self.add(tuple(part[order[size:]] for part in data))

    def rest(self):
        if not self.rows:
            return
        data = self._take(self.rows)
        if self.rng is not None:
            order = self.rng.permutation(len(data[0]))
            data = tuple(part[order] for part in data)
        for begin in range(0, len(data[0]), self.batch_size):
            yield tuple(part[begin : begin + self.batch_size] for part in data)


# ------------------------------------------------------------------------ errors
def _value_error(path, row, column, problem, value):
    numbering = _PARQUET_ROW if _format(path) == "parquet" else _CSV_ROW
    if isinstance(value, np.generic):
        value = value.item()  # 'inf', not 'np.float64(inf)'
    shown = "" if value is None else f": {value!r}"
    advice = "Fix or remove the row."
    if problem == "is missing":
        advice = (
            "Impute it, or pass `drop_missing=True` to drop rows with missing values "
            "(empty fields, NA, NaN, null and pyarrow's other null markers are missing)."
        )
    elif problem == "is not a number" and isinstance(value, str) and re.fullmatch(
        r"\s*[-+]?\d+,\d+\s*", value
    ):
        advice = "If the file writes decimal commas, pass `decimal_point=','`."
    return DataFileError(
        f"Received an invalid value in file {path!r}, {numbering.format(row=row)}, column "
        f"{column!r}: the value {problem}{shown}. Expected a finite number. {advice}",
        path=path,
        row=row,
        column=column,
        problem=problem,
        value=value,
    )


def _locate_csv_error(path, plan, types, options, error):
    """The `DataFileError` for a pyarrow CSV error, found in a second, exact pass.

    pyarrow's multithreaded reader does not know row numbers; this pass reads the
    file single-threaded with the used columns as strings, counting rows, and
    finds the first ragged row, or value that does not convert to its column's type.
    """
    ragged = []

    def on_invalid_row(row):
        ragged.append(row)
        return "error"

    read, parse = options.read(use_threads=False), options.parse(invalid_row_handler=on_invalid_row)
    try:
        if plan is None:  # the schema pass failed: its first block has the ragged row
            pa_csv.read_csv(path, read_options=read, parse_options=parse)
        else:
            convert = options.convert(
                column_types=dict.fromkeys(plan.columns, pa.string()),
                include_columns=plan.columns,
                strings_can_be_null=True,
            )
            start = 0
            with contextlib.closing(pa_csv.open_csv(
                path, read_options=read, parse_options=parse, convert_options=convert
            )) as reader:
                for batch in reader:
                    for name in plan.columns:
                        _check_strings(path, batch.column(name), name, types[name], start,
                                       options)
                    start += batch.num_rows
    except pa.ArrowInvalid:
        pass
    if ragged:
        info = ragged[0]
        row = None if info.number is None else info.number - 1  # number counts the header
        where = _CSV_ROW.format(row=row) if row is not None else "a data row"
        return DataFileError(
            f"Received a ragged row in file {path!r}, {where}: expected "
            f"{info.expected_columns} fields, found {info.actual_columns} in {info.text!r}. "
            f"Every row needs one value per header column (delimiter={options.delimiter!r}).",
            path=path,
            row=row,
        )
    return DataFileError(f"Could not read the CSV file {path!r}: {error}", path=path)


def _check_strings(path, column, name, type_, start, options):
    """Raises naming the first value of a string column that does not convert to
    `type_` (found by bisection with pyarrow's own cast)."""
    original = column
    if type_ == pa.float64() and options.decimal_point != ".":
        column = pc.replace_substring(column, options.decimal_point, ".")

    def converts(stop):
        try:
            pc.cast(column.slice(0, stop), type_)
        except pa.ArrowInvalid:
            return False
        return True

    if converts(len(column)):
        return
    low, high = 0, len(column)  # the first `low` convert, the first `high` do not
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if converts(middle) else (low, middle)
    value = original[low].as_py()
    raise _value_error(path, start + high, name, "is not a number", value) from None
