"""Reading a numeric CSV table with the standard library's `csv` module.

Imports NumPy only (no TensorFlow), so the command line can check a file
before TensorFlow starts. The whole table is held in memory as float64: fine
for files up to a few million cells (about 100 MB of CSV); larger data belongs
in a `tf.data` pipeline fed to `LinearRegression.fit` from Python.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass

import numpy as np


class DataError(ValueError):
    """A problem with an input file, naming the file, row, column and value."""


@dataclass
class Table:
    """A CSV file's header and non-blank data rows, as text.

    Cells become numbers only where asked (`numbers`), so a table may carry
    text columns (names, dates) that a command passes through untouched.
    """

    path: str
    header: list[str]
    rows: list[tuple[int, list[str]]]  # (1-based row number in the file, cells)

    def numeric_columns(self) -> list[str]:
        """The columns whose cell in the first data row is a number."""
        first = self.rows[0][1] if self.rows else []
        return [name for name, cell in zip(self.header, first, strict=True) if _is_number(cell)]

    def check_columns(self, names: list[str], what: str = "column") -> None:
        """Raises DataError naming the first of `names` that the file lacks."""
        for name in names:
            if name not in self.header:
                raise DataError(
                    f"{self.path}: no {what} {name!r}; the columns are {', '.join(self.header)}"
                )

    def numbers(self, names: list[str]) -> np.ndarray:
        """The named columns as a float64 array of shape `(rows, len(names))`.

        Raises:
            DataError: naming the file, row, column and value of the first
                cell that is not a finite number.
        """
        self.check_columns(names)
        indices = [self.header.index(name) for name in names]
        values = np.empty((len(self.rows), len(names)), dtype=np.float64)
        for i, (row_number, row) in enumerate(self.rows):
            values[i] = [_number(self.path, row_number, self.header[j], row[j]) for j in indices]
        return values


def read_table(path: str, min_rows: int = 1) -> Table:
    """Reads a CSV file with a header row.

    Raises:
        DataError: for a missing, unreadable or empty file, a duplicate or
            empty column name, a row with the wrong number of cells, or fewer
            than `min_rows` data rows.
    """
    header, rows = _read_rows(path)
    if len(rows) < min_rows:
        raise DataError(f"{path}: expected at least {min_rows} data rows, received {len(rows)}")
    return Table(path=path, header=header, rows=rows)


def _read_rows(path: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and the non-blank data rows `(row_number, cells)` of a CSV file."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise DataError(f"{path} is empty: expected a header row and data rows")
            header = [name.strip() for name in header]
            if len(set(header)) != len(header) or "" in header:
                raise DataError(f"{path}: the header row needs unique, non-empty column names")
            rows = []
            for row_number, row in enumerate(reader, start=2):
                if not any(cell.strip() for cell in row):
                    continue  # a blank line
                if len(row) != len(header):
                    raise DataError(
                        f"{path}, row {row_number}: expected {len(header)} cells, "
                        f"received {len(row)}"
                    )
                rows.append((row_number, row))
    except IsADirectoryError:
        raise DataError(f"cannot read {path}: it is a directory") from None
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror}") from None
    except (csv.Error, UnicodeDecodeError) as error:
        raise DataError(f"{path}: not a readable CSV file ({error})") from None
    return header, rows


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _number(path: str, row: int, column: str, cell: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise DataError(
            f"{path}, row {row}, column {column!r}: expected a number, received {cell!r}"
        ) from None
    if not math.isfinite(value):
        raise DataError(
            f"{path}, row {row}, column {column!r}: expected a finite number, received {cell!r}"
        )
    if abs(value) > _FLOAT32_MAX:
        raise DataError(
            f"{path}, row {row}, column {column!r}: expected a number within float32's "
            f"finite range (±{_FLOAT32_MAX:.7g}, the model computes in float32), "
            f"received {cell!r}; rescale the column"
        )
    return value


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def write_with_column(stream, table: Table, name: str, values: np.ndarray) -> None:
    """Writes `table` as CSV to `stream` with a last column `name` of numbers.

    A column already called `name` (e.g. a file this command wrote) is replaced,
    not repeated. Numbers are written as the shortest text that reads back as the
    same value in their own dtype (float32 predictions: `1.7632`, not
    `1.7631999254226685`).
    """
    keep = [i for i, column in enumerate(table.header) if column != name]
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow([*(table.header[i] for i in keep), name])
    for (_, row), value in zip(table.rows, values, strict=True):
        writer.writerow([*(row[i] for i in keep), _shortest(value)])


def _shortest(value) -> str:
    """The shortest round-trip text of a NumPy scalar in its own precision."""
    return str(value if isinstance(value, np.generic) else np.float64(value))
