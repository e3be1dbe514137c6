"""`keras_linreg._event_file` writes what `tf.summary` writes.

The reference is TensorFlow itself: the same values written by
`tf.summary.scalar` / `histogram` / `image` through `tf.summary.create_file_writer`,
read back as records, and compared value by value (tag, plugin metadata and the
tensor proto, byte for byte), and the histogram buckets compared with
TensorBoard's own TensorFlow bucketing (`summary_v2._buckets`) exactly.
"""

from __future__ import annotations

import glob
import os

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.histogram import summary_v2 as histogram_summary

from keras_linreg import _event_file


def tf_summary_values(tmp_path, write):
    """`{tag: Summary.Value}` that `write()` produces under a `tf.summary` file writer."""
    writer = tf.summary.create_file_writer(str(tmp_path / "reference"))
    with writer.as_default():
        write()
    writer.close()
    (path,) = glob.glob(str(tmp_path / "reference" / "events.out.tfevents.*"))
    values = {}
    for record in tf.data.TFRecordDataset(path):
        event = event_pb2.Event.FromString(record.numpy())
        for value in event.summary.value:
            values[value.tag] = value
    return values


def parsed(value):
    """`value` through protobuf's own serializer and parser, as a reader sees it."""
    return summary_pb2.Summary.Value.FromString(value.SerializeToString())


def assert_same_value(ours, reference):
    assert ours.tag == reference.tag
    assert ours.metadata == reference.metadata
    assert ours.tensor.SerializeToString() == reference.tensor.SerializeToString(), ours.tag


SCALARS = [
    0.0,
    np.float64(-0.0),  # (a Python -0.0 comes out +0.0 of TF's cache of scalar constants)
    0.1,
    -2.5,
    1 / 3,
    1e-50,  # below float32: 0
    3.4028234663852886e38,  # float32's largest
    float("inf"),
    float("-inf"),
    float("nan"),
    np.float64(0.7),
    np.float32(0.3),
    7,
    np.int64(-12),
]


def test_scalars_are_tf_summary_scalars(tmp_path):
    tags = [f"s/{i}" for i in range(len(SCALARS))]

    def write():
        for tag, value in zip(tags, SCALARS, strict=True):
            tf.summary.scalar(tag, value, step=3)

    reference = tf_summary_values(tmp_path, write)
    ours = [parsed(v) for v in _event_file.scalars(tags, SCALARS)]
    assert len(ours) == len(tags)
    for value in ours:
        assert_same_value(value, reference[value.tag])


def test_a_value_beyond_float32_is_an_infinity():
    """Where `tf.summary.scalar(1e39)` raises for a Python float, the value logs as inf."""
    (value,) = _event_file.scalars(["big"], [1e39])
    assert tf.make_ndarray(parsed(value).tensor) == np.float32(np.inf)


HISTOGRAM_DATA = [
    np.array([0.5]),
    np.array([2.0, 2.0, 2.0]),
    np.array([-1.0, 1.0]),
    np.arange(12, dtype=np.float64),
    np.array([1e-30, 2e-30, 5e-30, 1e30]),
    np.array([3.0, 1e300, -1e300 / 3]),
]


@pytest.mark.parametrize("case", range(len(HISTOGRAM_DATA) + 4))
def test_histogram_buckets_are_tensorboards(case):
    """Identical float64 rows to TensorBoard's TensorFlow bucketing, edge cases and random data."""
    if case < len(HISTOGRAM_DATA):
        data = HISTOGRAM_DATA[case]
    else:
        rng = np.random.default_rng(case)
        data = rng.normal(size=int(rng.integers(2, 3000))) * 10.0 ** rng.integers(-5, 6)
        if case % 2:
            data = data.astype(np.float32)  # a float32 model's slopes
    expected = histogram_summary._buckets(tf.constant(data)).numpy()
    np.testing.assert_array_equal(_event_file.histogram_buckets(data), expected)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_histogram_of_nonfinite_data_is_tensorboards(bad):
    data = np.array([1.0, bad, -3.0])
    expected = histogram_summary._buckets(tf.constant(data)).numpy()
    np.testing.assert_array_equal(_event_file.histogram_buckets(data), expected)


def test_histogram_and_image_values_are_tf_summarys(tmp_path, rng):
    slopes = rng.normal(size=10)
    pixels = rng.integers(0, 256, size=(24, 40, 4), dtype=np.uint8)

    def write():
        tf.summary.histogram("slopes", slopes, step=1)
        tf.summary.image("fit", pixels[np.newaxis], step=1)

    reference = tf_summary_values(tmp_path, write)
    assert_same_value(parsed(_event_file.histogram("slopes", slopes)), reference["slopes"])
    assert_same_value(parsed(_event_file.image("fit", pixels)), reference["fit"])


def test_event_file_records_read_back_by_tensorboard(tmp_path):
    """One record per write, each a whole `Event`; TensorBoard's reader sees every value."""
    events = _event_file.EventFile(str(tmp_path / "run"))
    for step in range(3):
        events.write(step, _event_file.scalars(["a", "b"], [step + 0.5, -step]), wall_time=10.0)
    events.close()
    (path,) = glob.glob(str(tmp_path / "run" / "events.out.tfevents.*.v2"))
    records = [event_pb2.Event.FromString(r.numpy()) for r in tf.data.TFRecordDataset(path)]
    assert records[0].file_version == "brain.Event:2"
    assert [(e.step, e.wall_time, len(e.summary.value)) for e in records[1:]] == [
        (0, 10.0, 2),
        (1, 10.0, 2),
        (2, 10.0, 2),
    ]
    accumulator = event_accumulator.EventAccumulator(path)
    accumulator.Reload()
    assert sorted(accumulator.Tags()["tensors"]) == ["a", "b"]
    logged = [float(tf.make_ndarray(e.tensor_proto)) for e in accumulator.Tensors("a")]
    assert logged == [0.5, 1.5, 2.5]


def test_a_second_file_in_the_same_second_is_a_new_file(tmp_path):
    first = _event_file.EventFile(str(tmp_path))
    second = _event_file.EventFile(str(tmp_path))
    assert first.path != second.path
    first.close()
    second.close()
    second.close()  # closing twice is harmless
    assert len(os.listdir(tmp_path)) == 2


def test_a_tf_summary_writer_in_the_same_directory_and_second_writes_its_own_file(tmp_path):
    """TensorFlow names its files with a counter of its own and opens them truncating:
    ours must never take one of its names, or each would write over the other."""
    ours = _event_file.EventFile(str(tmp_path))
    ours.write(0, _event_file.scalars(["ours"], [1.0]))
    writer = tf.summary.create_file_writer(str(tmp_path))
    with writer.as_default():
        tf.summary.scalar("theirs", 2.0, step=0)
    writer.close()
    ours.write(1, _event_file.scalars(["ours"], [3.0]))
    ours.close()
    files = sorted(glob.glob(str(tmp_path / "events.out.tfevents.*")))
    assert len(files) == 2
    tags = {}
    for path in files:
        accumulator = event_accumulator.EventAccumulator(path)
        accumulator.Reload()
        for tag in accumulator.Tags()["tensors"]:
            tags[tag] = [float(tf.make_ndarray(e.tensor_proto)) for e in accumulator.Tensors(tag)]
    assert tags == {"ours": [1.0, 3.0], "theirs": [2.0]}
