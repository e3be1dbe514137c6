"""The command line's data files: CSV, CSV.GZ and Parquet, read with pyarrow.

`expand` (no pyarrow, no TensorFlow) turns `DATA...` arguments into files before
TensorFlow starts. `load_training` reads `train`'s columns through
`keras_linreg.data.dataset_from_files` into NumPy when they fit `--memory-budget`,
else hands back the dataset to stream; `predict_files` streams `predict`'s rows
from input to output block by block. Bad data becomes one line naming the file,
the row and the column. User guide: docs/data.md ("The command line on files").
"""

from __future__ import annotations

import glob
import math
import os
import re
from dataclasses import dataclass

import numpy as np

SUFFIXES = (".csv", ".csv.gz", ".parquet")
# `--memory-budget`'s default: the used columns as float32 up to 1 GB load into memory.
DEFAULT_MEMORY_BUDGET = "1GB"
# Rows per batch when training streams and `--batch-size` is not given.
STREAM_BATCH_SIZE = 65536
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}  # fmt: skip
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_PREDICTION = "prediction"


class DataError(ValueError):
    """A problem with an input file: one line naming the file (row, column)."""


# ------------------------------------------------------------- before TensorFlow
def parse_byte_size(text: str) -> int:
    """`--memory-budget`: bytes, or a number with a unit (`500MB`, `1GB`, `2GiB`)."""
    import argparse

    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z]*)\s*", text)
    unit = match and match.group(2).upper()
    if not match or unit not in _UNITS or not math.isfinite(float(match.group(1))):
        raise argparse.ArgumentTypeError(
            f"expected a size such as 1GB, 500MB, 2GiB or 0 (bytes), received {text!r}"
        )
    return int(float(match.group(1)) * _UNITS[unit])


def format_bytes(size: float) -> str:
    for unit, factor in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= factor:
            return f"{size / factor:.3g} {unit}"
    return f"{int(size)} bytes"


def expand(items: list[str]) -> list[str]:
    """The files `DATA...` names: each a file or a glob (expanded sorted), in order.

    Raises:
        DataError: for a missing file, a directory, a glob matching nothing, or
            a file that is not .csv, .csv.gz or .parquet.
    """
    files = []
    for item in items:
        if any(character in item for character in "*?["):
            matches = sorted(path for path in glob.glob(item) if os.path.isfile(path))
            if not matches:
                raise DataError(f"{item}: no file matches this pattern")
        elif os.path.isdir(item):
            raise DataError(f"{item} is a directory; expected a {_formats()} file")
        elif not os.path.exists(item):
            raise DataError(f"{item}: no such file or directory")
        else:
            matches = [item]
        for path in matches:
            if not path.lower().endswith(SUFFIXES):
                raise DataError(f"{path}: expected a {_formats()} file (by its extension)")
        files.extend(matches)
    return files


def _formats():
    return ", ".join(SUFFIXES[:-1]) + " or " + SUFFIXES[-1]


# ------------------------------------------------------------ errors, one line
def _is_parquet(path):
    return path.lower().endswith(".parquet")


def _where(path, row, column=None):
    """`FILE, row N, column 'C'`: CSV rows count the header as row 1 (the line in a
    file without blank lines or quoted line breaks), Parquet rows from 1."""
    text = path
    if row is not None:
        text += f", row {row if _is_parquet(path) else row + 1}"
    if column is not None:
        text += f", column {column!r}"
    return text


def _problem_text(problem, value):
    """What a bad value should have been, in this tool's words, or None."""
    shown = value.item() if isinstance(value, np.generic) else value
    if problem == "is not a number":
        return f"expected a number, received {shown!r}"
    if problem == "is missing":
        return "expected a number, received a missing value (empty, NA, NaN, null, ...)"
    if problem.startswith("is not finite"):
        return f"expected a finite number, received {shown!r}"
    if problem.startswith("is outside float32"):
        return (
            f"expected a number within float32's finite range (±{_FLOAT32_MAX:.7g}, the "
            f"model computes in float32), received {shown!r}; rescale the column"
        )
    return None


def file_error(error) -> DataError:
    """A `keras_linreg.data.DataFileError` as this tool's one-line error."""
    text = _problem_text(error.problem or "", error.value) if error.problem else None
    if text is None or error.row is None:
        return DataError(str(error))
    return DataError(f"{_where(error.path, error.row, error.column)}: {text}")


def _one_line(error):
    return " ".join(str(error).split())


# ------------------------------------------------------------------ columns
def column_names(path: str) -> list[str] | None:
    """The file's column names (pyarrow's: a UTF-8 BOM is not part of the first), or
    None when they cannot be read (the reader then reports why)."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    try:
        if _is_parquet(path):
            return list(pq.read_schema(path).names)
        reader = pa_csv.open_csv(path)
        names = list(reader.schema.names)
        reader.close()
        return names
    except (pa.ArrowException, OSError, UnicodeDecodeError):
        return None


def check_columns(path, names, wanted, what):
    """Raises naming the first of `wanted` that `names` lacks."""
    for name in wanted:
        if name not in names:
            raise DataError(f"{path}: no {what} {name!r}; the columns are {', '.join(names)}")


# ------------------------------------------------------------------ training
@dataclass
class TrainingData:
    """`train`'s data: in memory (`x`, `y`) or streamed (`dataset`)."""

    files: list[str]
    features: list[str]
    target: str
    dataset: object  # the `dataset_from_files` dataset (streamed, or read once)
    x: np.ndarray | None = None  # float32 (n, k), in memory only
    y: np.ndarray | None = None  # float32 (n,)
    size: int = 0  # bytes of the used columns as float32 (a lower bound when streamed)

    @property
    def streamed(self) -> bool:
        return self.x is None

    def batches(self):
        """One pass over the files: `(x, y)` float32 NumPy batches, no `tf.data`."""
        from keras_linreg.data import DataFileError
        from keras_linreg.inputs import FILE_READER_ATTRIBUTE

        try:
            yield from getattr(self.dataset, FILE_READER_ATTRIBUTE)()
        except DataFileError as error:
            raise file_error(error) from None


def load_training(files, target, features, budget, batch_size, min_rows=2,
                  progress=None) -> TrainingData:
    """Checks `train`'s files and reads them into memory if they fit `budget` bytes.

    The used columns (features and target) as float32 are the size compared with
    the budget: Parquet files' row counts are known beforehand; CSV files are read
    until they exceed it, then streamed instead. `progress` (a
    `progress.ReadProgress`, on a terminal) is shown the rows read.

    Raises:
        DataError: a missing column, no numeric feature, fewer than `min_rows`
            rows, or a bad value (file, row, column).
    """
    import pyarrow.parquet as pq

    from keras_linreg.data import DataFileError, dataset_from_files

    names = column_names(files[0])
    if names is not None:
        check_columns(files[0], names, [target], "--target column")
        if features is not None:
            check_columns(files[0], names, features, "feature column")
    try:
        dataset = dataset_from_files(
            files, target=target, features=features,
            batch_size=batch_size or STREAM_BATCH_SIZE,
        )  # fmt: skip
    except DataFileError as error:  # e.g. a bad value in a mostly numeric column
        raise file_error(error) from None
    except ValueError as error:
        raise DataError(_one_line(error)) from None
    from keras_linreg.inputs import FILE_FEATURES_ATTRIBUTE, FILE_READER_ATTRIBUTE

    if progress is not None:
        reader = getattr(dataset, FILE_READER_ATTRIBUTE)
        progress.watch(lambda: reader.rows_read)
    features = list(getattr(dataset, FILE_FEATURES_ATTRIBUTE))
    data = TrainingData(files=files, features=features, target=target, dataset=dataset)
    row_bytes = 4 * (len(features) + 1)
    if all(_is_parquet(path) for path in files):
        rows = sum(pq.ParquetFile(path).metadata.num_rows for path in files)
        data.size = rows * row_bytes
        if data.size > budget:
            return data
    xs, ys, size = [], [], 0
    batches = data.batches()
    for x, y in batches:
        size += len(y) * row_bytes
        if size > budget:
            batches.close()
            data.size = size
            return data
        xs.append(x)
        ys.append(y)
    rows = sum(len(y) for y in ys)
    if rows < min_rows:
        where = files[0] if len(files) == 1 else ", ".join(files)
        raise DataError(f"{where}: expected at least {min_rows} data rows, received {rows}")
    data.x = xs[0] if len(xs) == 1 else np.concatenate(xs)
    data.y = ys[0] if len(ys) == 1 else np.concatenate(ys)
    data.size = size
    return data


# ------------------------------------------------------------------ predict
def predict_files(files, names, predict_fn, output, budget) -> None:
    """Writes each input row's columns plus `prediction`, reading block by block.

    The output has the first file's columns (other files must have them; an
    existing `prediction` column is replaced, not repeated) and a last column
    `prediction`, float32, written as the shortest text that reads back as the
    same float32. CSV input is passed through as its text; Parquet input as its
    values. `output` ending in `.parquet` is written as Parquet, `.gz` as gzipped
    CSV, anything else as CSV; it is written atomically (a bad row leaves
    nothing). Without `output`, CSV goes to standard output: at the end when the
    data fits `budget`, else as it is read.

    Raises:
        DataError: a missing feature column or a bad value (file, row, column).
    """
    import sys

    first = column_names(files[0])
    if first is None:
        next(_blocks(files[0], None, typed=True), None)  # raises the reader's error
        raise DataError(f"{files[0]}: not a readable file (its columns could not be read)")
    kept = [name for name in first if name != _PREDICTION]
    parquet_out = output is not None and output.lower().endswith(".parquet")
    for path in files:
        columns = first if path == files[0] else column_names(path)
        missing = [name for name in names if name not in (columns or [])]
        if missing:
            raise DataError(
                f"{path}: no column {missing[0]!r}, a feature the model was trained on "
                f"(it needs {', '.join(names)}; the file has {', '.join(columns or [])})"
            )
        absent = [name for name in kept if name not in columns]
        if absent:
            raise DataError(
                f"{path}: no column {absent[0]!r}, which {files[0]} has; every file needs "
                f"the first file's columns ({', '.join(kept)})"
            )

    def tables():
        """`(table of the kept columns with `prediction`)` per block, checked."""
        for path in files:
            start = 0
            for table in _blocks(path, kept, typed=parquet_out or _is_parquet(path)):
                x = np.column_stack(
                    [_features(path, table.column(name), name, start) for name in names]
                ).astype(np.float32)
                predictions = np.asarray(predict_fn(x), dtype=np.float32).reshape(-1)
                start += table.num_rows
                yield table.select(kept), predictions

    if output is None:
        _write_stdout(tables(), kept, sys.stdout, budget)
        return
    from keras_linreg._atomic import write_atomically

    def write(temporary):
        if parquet_out:
            _write_parquet(temporary, tables(), kept)
        else:
            _write_csv_file(temporary, tables(), kept, output.lower().endswith(".gz"))

    write_atomically(output, write, overwrite=True, argument="--output")


def _blocks(path, columns, typed):
    """The file's rows, one pyarrow table per CSV block or Parquet row group: CSV
    columns as their text (`typed=False`) or as pyarrow infers them from the first
    block (`typed=True`), Parquet as stored."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    try:
        if _is_parquet(path):
            parquet = pq.ParquetFile(path)
            for group in range(parquet.num_row_groups):
                yield parquet.read_row_group(group)
            return
        read = pa_csv.ReadOptions(block_size=4 << 20)
        if typed:
            head = pa_csv.open_csv(path, read_options=read)
            types = {field.name: field.type for field in head.schema}
            head.close()
            convert = pa_csv.ConvertOptions(column_types=types)
        else:
            convert = pa_csv.ConvertOptions(
                column_types=dict.fromkeys(columns or [], pa.string()),
                strings_can_be_null=False, quoted_strings_can_be_null=False,
            )  # fmt: skip
        reader = pa_csv.open_csv(path, read_options=read, convert_options=convert)
        try:
            for batch in reader:
                yield pa.Table.from_batches([batch])
        finally:
            reader.close()
    except (pa.ArrowException, OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: not a readable {'Parquet' if _is_parquet(path) else 'CSV'} "
                        f"file ({_one_line(error)})") from None


def _features(path, column, name, start):
    """A feature column of one block as float64, checked: numbers, present, finite,
    within float32's range; raises naming the row."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from keras_linreg.inputs import first_invalid_value

    if column.null_count:
        row = int(np.argmax(np.asarray(column.is_null())))
        text = _problem_text("is missing", None)
        raise DataError(f"{_where(path, start + row + 1, name)}: {text}")
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        try:
            column = pc.cast(pc.utf8_trim_whitespace(column), pa.float64())
        except pa.ArrowInvalid:
            for row, text in enumerate(column.to_pylist()):
                try:
                    float(text)
                except ValueError:
                    raise DataError(
                        f"{_where(path, start + row + 1, name)}: expected a number, "
                        f"received {text!r}"
                    ) from None
            raise
    elif not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)
              or pa.types.is_boolean(column.type)):
        raise DataError(f"{path}: column {name!r} has type {column.type}; expected numbers")
    values = column.to_numpy().astype(np.float64)
    invalid = first_invalid_value(values)
    if invalid is not None:
        row, problem = invalid
        raise DataError(
            f"{_where(path, start + row + 1, name)}: {_problem_text(problem, values[row])}"
        )
    return values


# ------------------------------------------------------------------ writing
def _csv_bytes(table, predictions, header=None):
    """One block as CSV bytes (`header` first, if given): text quoted only where
    it needs it, as Python's `csv` module does; `prediction` last."""
    import pyarrow as pa
    import pyarrow.compute as pc

    cells = []
    for column in table.columns:
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            column = pc.cast(column, pa.string())
        column = pc.fill_null(column, "")
        needs = pc.match_substring_regex(column, '[",\r\n]')
        if pc.any(needs).as_py():
            quoted = pc.binary_join_element_wise(
                '"', pc.replace_substring(column, '"', '""'), '"', ""
            )
            column = pc.if_else(needs, quoted, column)
        cells.append(column)
    cells.append(pa.array(predictions.astype(str), pa.string()))
    lines = pc.binary_join_element_wise(*cells, ",")
    # Joining each line with "" on "\n" ends it with a newline.
    rows = pc.binary_join_element_wise(lines, pa.scalar("", pa.string()), "\n")
    return (header or b"") + _string_bytes(rows)


def _string_bytes(array):
    """The concatenated UTF-8 of a pyarrow string array without nulls."""
    if hasattr(array, "combine_chunks"):  # a ChunkedArray
        array = array.combine_chunks()
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int32)
    offsets = offsets[array.offset : array.offset + len(array) + 1]
    if len(array) == 0:
        return b""
    return array.buffers()[2].to_pybytes()[offsets[0] : offsets[-1]]


def _header(kept):
    import csv
    import io

    stream = io.StringIO()
    csv.writer(stream, lineterminator="\n").writerow([*kept, _PREDICTION])
    return stream.getvalue().encode()


def _write_csv_file(path, tables, kept, gzip):
    import pyarrow as pa

    sink = pa.OSFile(path, "wb")
    stream = pa.CompressedOutputStream(sink, "gzip") if gzip else sink
    try:
        stream.write(_header(kept))
        for table, predictions in tables:
            stream.write(_csv_bytes(table, predictions))
    finally:
        stream.close()
        if gzip:
            sink.close()


def _write_stdout(tables, kept, stdout, budget):
    """CSV to standard output: held until the end while it fits `budget`, else
    written as read (from the block that exceeds it on)."""
    pending, size = [_header(kept)], 0
    for table, predictions in tables:
        block = _csv_bytes(table, predictions)
        if pending is not None:
            pending.append(block)
            size += len(block)
            if size > budget:
                _emit(stdout, b"".join(pending))
                pending = None
        else:
            _emit(stdout, block)
    if pending is not None:
        _emit(stdout, b"".join(pending))


def _emit(stdout, data):
    stdout.flush()
    buffer = getattr(stdout, "buffer", None)
    if buffer is not None:
        # In pieces: one huge write() to a pipe whose reader has gone (`| head`) can
        # end short without an error; the next piece then raises BrokenPipeError.
        view = memoryview(data)
        for begin in range(0, len(view), 1 << 16):
            buffer.write(view[begin : begin + (1 << 16)])
        buffer.flush()
    else:  # a text stream without bytes (e.g. captured in tests)
        stdout.write(data.decode())


def _write_parquet(path, tables, kept):
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    try:
        for table, predictions in tables:
            table = table.append_column(_PREDICTION, pa.array(predictions, pa.float32()))
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            elif table.schema != writer.schema:
                try:
                    table = table.cast(writer.schema)
                except (pa.ArrowInvalid, ValueError) as error:
                    raise DataError(
                        f"a block's columns do not have the first rows' types "
                        f"({_one_line(error)}); write CSV instead"
                    ) from None
            writer.write_table(table)
        if writer is None:  # no rows
            fields = [pa.field(name, pa.string()) for name in kept]
            writer = pq.ParquetWriter(path, pa.schema([*fields, (_PREDICTION, pa.float32())]))
    finally:
        if writer is not None:
            writer.close()
