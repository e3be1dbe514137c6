"""`keras_linreg.data.dataset_from_files`: real CSV, CSV.GZ and Parquet files in tmp_path.

References are independent readers: `np.loadtxt` for CSV text, `pyarrow.parquet.read_table`
for Parquet, NumPy for the statistics and the fast (in-memory) path of `fit` for training.
"""

import gzip

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

import keras_linreg
from keras_linreg import data, inputs, standardization
from keras_linreg.data import DataFileError, dataset_from_files

_NAMES = ["a", "b", "c", "y", "w"]


def _table(n, seed=0):
    """`n` rows: features a, b, c, target y, weight w, as float64 rounded to float32."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)) * [1.0, 10.0, 0.1] + [0.0, 5.0, -2.0]
    y = x @ [1.5, -0.2, 3.0] + 0.7 + rng.normal(0, 0.1, n)
    w = rng.uniform(0.5, 2.0, n)
    return np.column_stack([x, y, w]).astype(np.float32).astype(np.float64)


def _write_csv(path, values, names=_NAMES, delimiter=",", header=True):
    lines = [delimiter.join(names)] if header else []
    lines += [delimiter.join(repr(float(v)) for v in row) for row in values]
    text = "\n".join(lines) + "\n"
    if str(path).endswith(".gz"):
        with gzip.open(path, "wt") as file:
            file.write(text)
    else:
        path.write_text(text)
    return str(path)


def _write_parquet(path, values, row_group_size, names=_NAMES):
    table = pa.table({name: values[:, j] for j, name in enumerate(names)})
    pq.write_table(table, path, row_group_size=row_group_size)
    return str(path)


def _collect(dataset):
    batches = [tuple(part.numpy() for part in batch) for batch in dataset]
    return batches, [np.concatenate(parts) for parts in zip(*batches, strict=True)]


def _loadtxt(path, delimiter=","):
    return np.loadtxt(path, delimiter=delimiter, skiprows=1, dtype=np.float64, ndmin=2)


# ------------------------------------------------------------------ contents
@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
@pytest.mark.parametrize("batch_size", [1, 7, 100, 1000])
def test_csv_batches_are_the_file_in_order(tmp_path, suffix, batch_size):
    path = _write_csv(tmp_path / f"d{suffix}", _table(250))
    reference = _loadtxt(gzip.open(path, "rt") if suffix == ".csv.gz" else path)
    batches, (x, y, w) = _collect(
        dataset_from_files(path, target="y", sample_weight="w", batch_size=batch_size)
    )
    sizes = [len(b[0]) for b in batches]
    rest = [250 % batch_size] if 250 % batch_size else []
    assert sizes == [batch_size] * (250 // batch_size) + rest
    assert x.dtype == y.dtype == w.dtype == np.float32 and x.shape == (250, 3)
    np.testing.assert_array_equal(x, reference[:, :3].astype(np.float32))
    np.testing.assert_array_equal(y, reference[:, 3].astype(np.float32))
    np.testing.assert_array_equal(w, reference[:, 4].astype(np.float32))


def test_csv_blocks_are_rebatched_exactly(tmp_path, monkeypatch):
    """Many small pyarrow blocks (each a few rows) still make whole batches."""
    monkeypatch.setattr(data, "_CSV_BLOCK_BYTES", 256)
    path = _write_csv(tmp_path / "d.csv", _table(500))
    batches, (x, y) = _collect(dataset_from_files(path, target="y", features=["c", "a"],
                                                  batch_size=64))
    assert [len(b[0]) for b in batches] == [64] * 7 + [52]
    reference = _loadtxt(path)
    np.testing.assert_array_equal(x, reference[:, [2, 0]].astype(np.float32))
    np.testing.assert_array_equal(y, reference[:, 3].astype(np.float32))


def test_parquet_row_groups_files_and_glob(tmp_path):
    values = _table(1000)
    for i, (begin, end) in enumerate([(0, 300), (300, 700), (700, 1000)]):
        _write_parquet(tmp_path / f"part-{i}.parquet", values[begin:end], row_group_size=64)
    assert pq.ParquetFile(tmp_path / "part-1.parquet").num_row_groups == 7
    glob = str(tmp_path / "part-*.parquet")
    reference = np.concatenate([
        np.column_stack([pq.read_table(tmp_path / f"part-{i}.parquet").column(n).to_numpy()
                         for n in _NAMES])
        for i in range(3)
    ])
    batches, (x, y, w) = _collect(
        dataset_from_files(glob, target="y", sample_weight="w", batch_size=128)
    )
    assert [len(b[0]) for b in batches] == [128] * 7 + [104]
    np.testing.assert_array_equal(x, reference[:, :3].astype(np.float32))
    np.testing.assert_array_equal(y, reference[:, 3].astype(np.float32))
    np.testing.assert_array_equal(w, reference[:, 4].astype(np.float32))
    # A list keeps its order; CSV and Parquet mix.
    csv = _write_csv(tmp_path / "z.csv", values[:10])
    _, (x2, _) = _collect(dataset_from_files(
        [csv, str(tmp_path / "part-0.parquet")], target="y", features=["a", "b", "c"]))
    np.testing.assert_array_equal(x2, np.concatenate([values[:10], values[:300]])[:, :3]
                                  .astype(np.float32))


def test_default_features_are_the_numeric_columns_of_the_schema(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("id,a,name,b,y\n1,NA,x,2.5,3\n2,1.5,y,3.5,4\n3,2.5,z,NA,5\n")
    dataset = dataset_from_files(str(path), target="y", drop_missing=True)
    assert dataset.element_spec[0].shape.as_list() == [None, 3]
    assert getattr(dataset, inputs.FILE_FEATURES_ATTRIBUTE) == ("id", "a", "b")
    _, (x, y) = _collect(dataset)
    np.testing.assert_array_equal(x, [[2.0, 1.5, 3.5]])  # rows 1 and 3 dropped
    np.testing.assert_array_equal(y, [4.0])
    # Without a target: x only, every numeric column.
    (x_only,) = [b.numpy() for b in dataset_from_files(str(path), target=None, features=["id"])]
    np.testing.assert_array_equal(x_only, [[1.0], [2.0], [3.0]])


def test_schema_rules_bom_delimiters_decimal_comma_and_booleans(tmp_path):
    bom = tmp_path / "bom.csv"
    bom.write_bytes("\ufeffa,y\n1,2\n3,4\n".encode())
    _, (x, y) = _collect(dataset_from_files(str(bom), target="y", features=["a"]))
    np.testing.assert_array_equal(x, [[1.0], [3.0]])

    semicolon = tmp_path / "semi.csv"
    semicolon.write_text("a;b;y\n1,5;-2,25;3\n4,0;1e3;6,5\n")
    _, (x, y) = _collect(dataset_from_files(str(semicolon), target="y", delimiter=";",
                                            decimal_point=","))
    np.testing.assert_array_equal(x, [[1.5, -2.25], [4.0, 1000.0]])
    np.testing.assert_array_equal(y, [3.0, 6.5])

    tab = tmp_path / "tab.csv"
    tab.write_text("a\tflag\ty\n1\ttrue\t2\n3\tfalse\t4\n")
    _, (x, y) = _collect(dataset_from_files(str(tab), target="y", delimiter="\t"))
    np.testing.assert_array_equal(x, [[1.0, 1.0], [3.0, 0.0]])

    latin = tmp_path / "latin.csv"
    latin.write_bytes("prix\u00e9,y\n1,2\n".encode("latin-1"))
    dataset = dataset_from_files(str(latin), target="y", encoding="latin-1")
    assert getattr(dataset, inputs.FILE_FEATURES_ATTRIBUTE) == ("prix\u00e9",)


# ------------------------------------------------------------------- shuffle
def test_shuffle_is_seeded_repeatable_and_a_permutation(tmp_path):
    values = _table(2000)
    for i in range(4):
        _write_parquet(tmp_path / f"p{i}.parquet", values[500 * i : 500 * (i + 1)], 100)
    files = str(tmp_path / "p*.parquet")

    def epochs(seed, passes=2):
        dataset = dataset_from_files(files, target="y", features=["a", "b", "c"],
                                     batch_size=128, shuffle=True, seed=seed)
        return [_collect(dataset) for _ in range(passes)]

    first, again, other = epochs(1), epochs(1), epochs(2)
    for (batches, (x, y)), (_, (x2, y2)) in zip(first, again, strict=True):
        assert [len(b[0]) for b in batches] == [128] * 15 + [80]
        np.testing.assert_array_equal(x, x2)
        np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(first[0][1][0], first[1][1][0])  # each pass reshuffles
    assert not np.array_equal(first[0][1][0], other[0][1][0])  # another seed
    in_order = np.column_stack([values[:, :3], values[:, 3]]).astype(np.float32)
    for _, (x, y) in first + other:
        shuffled = np.column_stack([x, y])
        assert not np.array_equal(shuffled, in_order)
        np.testing.assert_array_equal(np.unique(shuffled, axis=0), np.unique(in_order, axis=0))


def test_memory_is_bounded_by_batches_and_one_block(tmp_path):
    """Rows held at once: at most one read block (a row group) plus the batcher's
    remainder, or the shuffle buffer and a batch, however long the file."""
    _write_parquet(tmp_path / "d.parquet", _table(20000), row_group_size=1000)
    path = str(tmp_path / "d.parquet")
    ordered = dataset_from_files(path, target="y", batch_size=300)
    assert sum(len(b[0]) for b in ordered) == 20000
    assert ordered._keras_linreg_files.peak_rows_held <= 1000 + 300
    shuffled = dataset_from_files(path, target="y", batch_size=300, shuffle=True, seed=0)
    assert sum(len(b[0]) for b in shuffled) == 20000
    assert shuffled._keras_linreg_files.peak_rows_held <= 1000 + 4 * 300 + 300


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])  # unknown and known length
def test_each_iterator_is_its_own_pass(tmp_path, suffix):
    """Interleaved iterators, an abandoned one (`take`), `repeat` and `cardinality`
    behave as for any `tf.data.Dataset`: each iterator reads the files from the start."""
    values = _table(1000)
    path = (_write_csv(tmp_path / "d.csv", values) if suffix == ".csv"
            else _write_parquet(tmp_path / "d.parquet", values, row_group_size=300))  # fmt: skip
    dataset = dataset_from_files(path, target="y", features=["a", "b"], batch_size=128)
    expected = [values[i : i + 128, 3] for i in range(0, 1000, 128)]  # 8 batches, the last 104
    known = 8 if suffix == ".parquet" else tf.data.UNKNOWN_CARDINALITY
    assert int(dataset.cardinality()) == known
    first, second = iter(dataset), iter(dataset)
    seen = {0: [], 1: []}
    for _ in range(8):  # alternating
        seen[0].append(next(first)[1].numpy())
        seen[1].append(next(second)[1].numpy())
    for iterator in (first, second):
        with pytest.raises(StopIteration):
            next(iterator)
    for batches in seen.values():
        assert len(batches) == 8
        for got, want in zip(batches, expected, strict=True):
            np.testing.assert_array_equal(got, want.astype(np.float32))
    assert [len(b[1]) for b in dataset.take(3)] == [128, 128, 128]  # abandoned mid-file
    repeated = [b[1].numpy() for b in dataset.repeat(2)]
    assert len(repeated) == 16
    np.testing.assert_array_equal(np.concatenate(repeated[8:]), values[:, 3].astype(np.float32))
    assert dataset._keras_linreg_files.passes == 5  # 2 interleaved, take, 2 repeated


@pytest.mark.parametrize("shuffle", [False, True])
def test_more_iterators_than_held_open_are_read_again_not_lost(tmp_path, shuffle):
    """Six interleaved iterators (more than the 4 passes held open): the ones closed
    meanwhile are read again up to where they were, each with its own pass's order."""
    values = _table(1000)
    path = _write_parquet(tmp_path / "d.parquet", values, row_group_size=300)
    dataset = dataset_from_files(path, target="y", features=["a", "b"], batch_size=128,
                                 shuffle=shuffle, seed=5)  # fmt: skip
    reader = dataset._keras_linreg_files
    iterators = [iter(dataset) for _ in range(6)]
    seen = [[] for _ in iterators]
    for _ in range(8):
        for batches, iterator in zip(seen, iterators, strict=True):
            batches.append(next(iterator)[1].numpy())
    assert reader.passes == 6
    assert reader.rows_read > 6 * 1000  # some passes were closed and read again
    target = np.sort(values[:, 3].astype(np.float32))
    orders = []
    for number, batches in enumerate(seen):
        assert [len(b) for b in batches] == [128] * 7 + [104]
        order = np.concatenate(batches)
        np.testing.assert_array_equal(np.sort(order), target)  # every row once
        # Pass `number`'s order, as the reader gives it read straight through.
        np.testing.assert_array_equal(order, np.concatenate([b[1] for b in reader(number)]))
        orders.append(order)
    assert all(np.array_equal(o, orders[0]) for o in orders) == (not shuffle)


def test_iterators_read_from_several_threads_at_once_each_get_their_whole_pass(tmp_path):
    """Eight threads each iterate their own iterator of one dataset at the same time
    (more than the passes held open, so passes are evicted and read again while other
    threads read): every pass has every row once, in its own order. Before the passes'
    lock, an eviction could close a generator another thread was running
    ("generator already executing"), seen once in the suite under load."""
    import concurrent.futures

    values = _table(2000)
    path = _write_parquet(tmp_path / "d.parquet", values, row_group_size=200)
    dataset = dataset_from_files(path, target="y", features=["a", "b"], batch_size=64,
                                 shuffle=True, seed=3)  # fmt: skip
    reader = dataset._keras_linreg_files

    def one_pass(_):
        return np.concatenate([batch[1].numpy() for batch in dataset])

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        orders = list(pool.map(one_pass, range(16)))
    assert reader.passes == 16
    target = np.sort(values[:, 3].astype(np.float32))
    passes = [np.concatenate([b[1] for b in reader(number)]) for number in range(16)]
    for order in orders:
        np.testing.assert_array_equal(np.sort(order), target)  # every row once
        # Some pass's order, whole (the threads draw pass numbers in any order).
        assert any(np.array_equal(order, p) for p in passes)


# -------------------------------------------------------------------- errors
def _first_error(make_dataset):
    """The error making or iterating the dataset raises, as `fit` would raise it."""
    with pytest.raises(DataFileError) as caught, data.raising_file_errors():
        for _ in make_dataset():
            pass
    return caught.value


def _numbered(tmp_path, rows, header="a,b,y", name="d.csv"):
    path = tmp_path / name
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return str(path)


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ("x1", "is not a number: 'x1'"),
        ("inf", "is not finite (NaN or ±inf): inf."),
        ("1e39", "outside float32's finite range"),
        ("", "is missing"),
        ("NA", "is missing"),
    ],
)
def test_bad_values_name_file_row_and_column(tmp_path, monkeypatch, bad, problem):
    monkeypatch.setattr(data, "_CSV_BLOCK_BYTES", 256)  # the bad row is blocks in
    rows = [f"{i},{i / 2},{i * 3}" for i in range(200)]
    rows[150] = f"150,{bad},450"
    path = _numbered(tmp_path, rows)
    error = _first_error(lambda: dataset_from_files(path, target="y", features=["a", "b"],
                                            batch_size=32))
    assert (error.path, error.row, error.column) == (path, 151, "b")
    message = str(error)
    assert f"file {path!r}, data row 151 (1-based, counting the records after the header)" \
        in message and "column 'b'" in message and problem in message
    if problem == "is missing":
        assert "drop_missing=True" in message


def test_bad_rows_are_refused_before_their_batch(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_CSV_BLOCK_BYTES", 256)
    rows = [f"{i},{i},{i}" for i in range(100)]
    rows[70] = "70,inf,70"
    path = _numbered(tmp_path, rows)
    seen = []
    with pytest.raises(DataFileError), data.raising_file_errors():
        for x, _ in dataset_from_files(path, target="y", batch_size=32):
            seen.append(x.numpy())
    # Whole batches of the first rows, in order; the batch of row 70 (rows 64..95) never comes.
    assert seen and all(len(x) == 32 for x in seen) and len(seen) <= 2
    np.testing.assert_array_equal(np.concatenate(seen)[:, 0], np.arange(32 * len(seen)))


def test_ragged_rows_negative_weights_and_parquet_values(tmp_path):
    path = _numbered(tmp_path, ["1,2,3", "4,5,6", "7,8", "1,2,3"])
    error = _first_error(lambda: dataset_from_files(path, target="y", features=["a", "b"]))
    assert error.row == 3 and "ragged row" in str(error) and "'7,8'" in str(error)

    weights = _numbered(tmp_path, ["1,2,1", "4,5,-0.5"], header="a,y,w", name="w.csv")
    error = _first_error(lambda: dataset_from_files(weights, target="y", sample_weight="w"))
    assert (error.row, error.column) == (2, "w") and "negative" in str(error)

    table = pa.table({"a": [1.0, 2.0, float("nan")], "s": ["1", "2.5", "x"],
                      "y": [1.0, 2.0, 3.0]})
    pq.write_table(table, tmp_path / "p.parquet")
    parquet = str(tmp_path / "p.parquet")
    error = _first_error(lambda: dataset_from_files(parquet, target="y", features=["a"]))
    assert (error.row, error.column) == (3, "a") and "row 3 (1-based, in file order)" in str(error)
    error = _first_error(lambda: dataset_from_files(parquet, target="y", features=["s"]))
    assert (error.row, error.column) == (3, "s") and "'x'" in str(error)
    single = pa.table({"a": pa.array([1.0, np.inf], pa.float32()), "y": [1.0, 2.0]})
    pq.write_table(single, tmp_path / "f32.parquet")  # float32 columns are kept as stored
    error = _first_error(lambda: dataset_from_files(str(tmp_path / "f32.parquet"), target="y"))
    assert (error.row, error.column) == (2, "a") and "not finite" in str(error)
    pq.write_table(table.slice(0, 2), tmp_path / "q.parquet")
    _, (x, _) = _collect(dataset_from_files(str(tmp_path / "q.parquet"), target="y",
                                            features=["s"]))
    np.testing.assert_array_equal(x, [[1.0], [2.5]])  # numeric text is parsed


def test_schema_errors_are_raised_at_once(tmp_path):
    path = _numbered(tmp_path, ["1,2,3"])
    with pytest.raises(ValueError, match=r"has no column 'price'. Available columns: "
                                         r"\['a', 'b', 'y'\]"):
        dataset_from_files(path, target="price")
    with pytest.raises(ValueError, match=r"features=\['a', 'z'\].*no column 'z'"):
        dataset_from_files(path, target="y", features=["a", "z"])

    no_header = _numbered(tmp_path, ["4,5,6"], header="1,2,3", name="nh.csv")
    with pytest.raises(ValueError, match="without a header"):
        dataset_from_files(no_header, target="3")

    semicolons = _numbered(tmp_path, ["1;2;3"], header="a;b;y", name="s.csv")
    with pytest.raises(ValueError, match=r"holds 2 ';': pass `delimiter=';'`"):
        dataset_from_files(semicolons, target="y")
    decimal_commas = _numbered(tmp_path, ["1,5;2;3", "2,5;3;4"], header="a;b;y", name="dc.csv")
    with pytest.raises(ValueError, match=r"delimiter=';'.*decimal_point=','"):
        dataset_from_files(decimal_commas, target="y")
    commas_as_decimals = _numbered(tmp_path, ["1,5;2;3", "2,5;3;4"], header="a;b;y",
                                   name="dc2.csv")
    with pytest.raises(ValueError, match=r"decimal_point=','"):
        list(dataset_from_files(commas_as_decimals, target="y", delimiter=";"))

    typo = _numbered(tmp_path, ["1,2,3", "4,five,6", "7,8,9"], name="typo.csv")
    with pytest.raises(DataFileError, match=r"mostly numbers but read as text.*column 'b'.*"
                                            r"data row 2 .* holds 'five'"):
        dataset_from_files(typo, target="y")

    for bad, match in [
        (dict(paths=str(tmp_path / "none-*.csv")), "matches no file"),
        (dict(paths=str(tmp_path / "d.txt")), "not a file"),
        (dict(batch_size=0), r"`batch_size`, expected a positive integer. Received: batch_size=0"),
        (dict(delimiter=";;"), "`delimiter`, expected one character"),
        (dict(target="y", sample_weight="y"), "same column"),
    ]:
        arguments = dict(paths=path, target="y") | bad
        with pytest.raises(ValueError, match=match):
            dataset_from_files(**arguments)


# -------------------------------------------------------------- the model
@pytest.mark.parametrize("suffix", [".parquet", ".csv"])  # known and unknown length
def test_fit_evaluate_predict_on_files_equal_the_arrays(tmp_path, suffix):
    values = _table(600)
    if suffix == ".csv":
        path = _write_csv(tmp_path / "d.csv", values)
    else:
        path = _write_parquet(tmp_path / "d.parquet", values, row_group_size=250)
    x, y, w = values[:, :3].astype(np.float32), values[:, 3].astype(np.float32), \
        values[:, 4].astype(np.float32)

    def model():
        m = keras_linreg.LinearRegression(learning_rate=0.002)
        m.compile()
        return m

    on_files, on_arrays = model(), model()
    files = dataset_from_files(path, target="y", sample_weight="w", batch_size=128)
    history = on_files.fit(files, epochs=3, verbose=0, validation_data=files)
    reference = on_arrays.fit(x, y, sample_weight=w, batch_size=128, epochs=3, shuffle=False,
                              verbose=0, validation_data=(x, y, w))
    for a, b in zip(on_files.get_parameters(), on_arrays.get_parameters(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(history.history["loss"], reference.history["loss"], rtol=1e-6)
    np.testing.assert_allclose(history.history["val_loss"], reference.history["val_loss"],
                               rtol=1e-6)
    assert on_files.feature_names == ("a", "b", "c")
    np.testing.assert_allclose(on_files.evaluate(files, verbose=0),
                               on_arrays.evaluate(x, y, sample_weight=w, verbose=0), rtol=1e-6)
    np.testing.assert_allclose(on_files.predict(files, verbose=0),
                               on_arrays.predict(x, verbose=0), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match=r"features=\('c', 'a', 'b'\).*feature_names="
                                         r"\('a', 'b', 'c'\)"):
        on_files.predict(dataset_from_files(path, target=None, features=["c", "a", "b"]))


def test_fit_raises_the_file_error_itself(tmp_path):
    rows = [f"{i},{i % 7},{i}" for i in range(300)]
    rows[250] = "250,NaN,250"
    path = _numbered(tmp_path, rows)
    model = keras_linreg.LinearRegression(learning_rate=0.001)
    model.compile()
    with pytest.raises(DataFileError, match=r"data row 251 .* column 'b': the value is missing"):
        model.fit(dataset_from_files(path, target="y", batch_size=50), epochs=1, verbose=0)


def test_standardize_adapts_in_one_streaming_pass(tmp_path):
    values = _table(3000, seed=3)
    values[:, 1] += 1e4  # far from zero: float64 accumulation matters
    _write_parquet(tmp_path / "d.parquet", values, row_group_size=700)
    dataset = dataset_from_files(str(tmp_path / "d.parquet"), target="y", sample_weight="w",
                                 batch_size=256)
    reference = values[:, :3].astype(np.float32).astype(np.float64)
    mean, std, rows = standardization.feature_statistics(dataset)
    assert rows == 3000
    np.testing.assert_allclose(mean, reference.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(std, reference.std(axis=0), rtol=1e-12)

    model = keras_linreg.LinearRegression(standardize=True, learning_rate=0.1)
    model.compile()
    passes = dataset._keras_linreg_files.passes
    model.fit(dataset, epochs=2, verbose=0)
    assert dataset._keras_linreg_files.passes == passes + 1 + 2  # one for the statistics
    assert int(model.adapted_rows.numpy()) == 3000
    np.testing.assert_array_equal(model.feature_mean.numpy(),
                                  mean.astype(model.feature_mean.dtype))
    np.testing.assert_array_equal(model.feature_std.numpy(), std.astype(model.feature_std.dtype))
    # Another dataset still needs adapt first, as before.
    other = keras_linreg.LinearRegression(standardize=True)
    other.compile()
    with pytest.raises(ValueError, match="Call `model.adapt"):
        other.fit(tf.data.Dataset.from_tensor_slices((reference, values[:, 3])).batch(64),
                  verbose=0)


def test_first_invalid_value_finds_the_first_bad_entry():
    values = np.array([1.0, -2.0, 1e39, np.nan, np.inf])
    assert inputs.first_invalid_value(values[:2]) is None
    assert inputs.first_invalid_value(values[:2], non_negative=True)[0] == 1
    assert inputs.first_invalid_value(values)[0] == 2
    assert inputs.first_invalid_value(values, float32=False)[0] == 3
    assert inputs.first_invalid_value(np.array([], dtype=float)) is None
