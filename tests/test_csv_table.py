"""`keras_linreg_cli.csv_table`: numbers from a CSV file, bad cells named."""

import numpy as np
import pytest

from keras_linreg_cli.csv_table import DataError, read_table


def test_csv_table_reads_numbers_and_names_bad_cells(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("name,a,y\nfirst,1.5,2\n\nsecond,-3,4e1\n")
    table = read_table(str(path))
    assert table.numeric_columns() == ["a", "y"]
    np.testing.assert_array_equal(table.numbers(["y", "a"]), [[2.0, 1.5], [40.0, -3.0]])
    with pytest.raises(DataError, match=r"row 2, column 'name': expected a number, received 'fir"):
        table.numbers(["name"])
    path.write_text("a,a\n1,2\n")
    with pytest.raises(DataError, match="unique"):
        read_table(str(path))
    path.write_text("a,y\n1,2\n3\n")
    with pytest.raises(DataError, match="row 3: expected 2 cells, received 1"):
        read_table(str(path))
