"""A TensorBoard event file written without TensorFlow ops, for `ParameterLogger`.

`tf.summary.scalar` runs a few eager TensorFlow ops per call (~0.12 ms each
here) and `tf.summary.histogram` about 25 (~10 ms): for a 10-feature model that
was 10-20× the epoch it logged. This module serializes the same `Summary`
values in Python (TensorBoard's own protos and plugin metadata, the histogram
buckets computed as TensorBoard's TensorFlow code computes them) and appends
them with `tf.io.TFRecordWriter`, which frames the records and computes their
CRCs in C++ and writes through TensorFlow's file systems, as `tf.summary` does.
"""

from __future__ import annotations

import itertools
import os
import socket
import time

import numpy as np
import tensorflow as tf
from tensorboard.compat.proto import (
    event_pb2,
    summary_pb2,
    tensor_pb2,
    tensor_shape_pb2,
    types_pb2,
)
from tensorboard.plugins.histogram import metadata as _histogram_metadata
from tensorboard.plugins.image import metadata as _image_metadata
from tensorboard.plugins.scalar import metadata as _scalar_metadata

# Every value carries its plugin's metadata, as `tf.summary` writes it.
_SCALAR_METADATA = _scalar_metadata.create_summary_metadata(display_name=None, description=None)
_HISTOGRAM_METADATA = _histogram_metadata.create_summary_metadata(
    display_name=None, description=None
)
_IMAGE_METADATA = _image_metadata.create_summary_metadata(display_name=None, description=None)

#: Buckets of a histogram, as `tf.summary.histogram`'s default.
HISTOGRAM_BUCKETS = 30

_file_counter = itertools.count()

# The scalars' tensors are written as `tf.summary.scalar` writes them: a float32
# of shape () in `tensor_content`. Building an epoch's ~15 `Summary.Value`
# protos and serializing the `Event` costs ~60 us here, an eighth of a
# 442-row full-batch epoch; the metadata protos are made once and copied.
_SCALAR_SHAPE = tensor_shape_pb2.TensorShapeProto()


class EventFile:
    """One growing event file, `events.out.tfevents.<time>.<host>.<pid>.<n>.keras_linreg.v2`.

    `keras_linreg` in the name: TensorFlow's own writer names its files
    `...<time>.<host>.<pid>.<n>.v2` with a counter of its own from 0, and opens
    them truncating, so without it a `tf.summary` writer opened in the same
    directory, process and second would write over this file.

    The directory is created if missing. Every write appends one `Event`
    record and hands it to the operating system (one `write(2)`, no fsync, as
    `tf.summary`'s `flush()`), so a reader, a live TensorBoard or the next
    process sees it at once, also after the writing process is killed.
    """

    def __init__(self, directory):
        tf.io.gfile.makedirs(directory)
        host, pid = socket.gethostname(), os.getpid()
        while True:  # never truncate an existing file (TFRecordWriter opens with O_TRUNC)
            stamp = f"{int(time.time()):010d}.{host}.{pid}.{next(_file_counter)}"
            self.path = os.path.join(directory, f"events.out.tfevents.{stamp}.keras_linreg.v2")
            if not tf.io.gfile.exists(self.path):
                break
        self._writer = tf.io.TFRecordWriter(self.path)
        # The first record names the format, as every TensorFlow event file does.
        first = event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2")
        self._append(first.SerializeToString())

    def write(self, step, values, wall_time=None):
        """Appends one `Event` at `step` whose summary holds `values`.

        Args:
            step: The event's step, a non-negative integer.
            values: `Summary.Value` protos, from `scalars`, `histogram` or
                `image`.
            wall_time: Seconds since the epoch; default now.
        """
        wall_time = time.time() if wall_time is None else wall_time
        summary = summary_pb2.Summary(value=values)
        event = event_pb2.Event(wall_time=wall_time, step=step, summary=summary)
        self._append(event.SerializeToString())

    def write_summary(self, step, summary):
        """Appends one `Event` at `step` holding the `Summary` proto `summary`."""
        event = event_pb2.Event(wall_time=time.time(), step=step, summary=summary)
        self._append(event.SerializeToString())

    def close(self):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _append(self, record):
        self._writer.write(record)
        self._writer.flush()


def scalars(tags, values):
    """`Summary.Value` protos as `tf.summary.scalar(tag, value)` writes them.

    Each a float32 tensor of shape () with the scalars plugin's metadata. The
    values are rounded to float32 together (to nearest, as `tf.cast`); one
    beyond float32's range becomes an infinity (where `tf.summary.scalar`
    raised for a Python float).
    """
    with np.errstate(over="ignore"):
        content = np.asarray(values, dtype=np.float64).astype("<f4").tobytes()
    return [
        summary_pb2.Summary.Value(
            tag=tag,
            metadata=_SCALAR_METADATA,
            tensor=tensor_pb2.TensorProto(
                dtype=types_pb2.DT_FLOAT,
                tensor_shape=_SCALAR_SHAPE,
                tensor_content=content[4 * i : 4 * i + 4],
            ),
        )
        for i, tag in enumerate(tags)
    ]


def histogram(tag, data):
    """A `Summary.Value` as `tf.summary.histogram(tag, data)` writes it.

    A float64 tensor `[30, 3]` (`histogram_buckets`) with the histograms
    plugin's metadata.
    """
    buckets = histogram_buckets(data)
    tensor = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_DOUBLE,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in buckets.shape]
        ),
        tensor_content=buckets.astype("<f8").tobytes(),
    )
    return summary_pb2.Summary.Value(tag=tag, metadata=_HISTOGRAM_METADATA, tensor=tensor)


def histogram_buckets(data, bucket_count=HISTOGRAM_BUCKETS):
    """The `[bucket_count, 3]` float64 rows `(left edge, right edge, count)` of `data`.

    The same float64 operations, in the same order, as TensorBoard's
    `tf.summary.histogram` (`tensorboard.plugins.histogram.summary_v2._buckets`),
    so the values are identical: with `m = min(data)`, `M = max(data)` and
    `w = (M - m) / k`, a value `v` falls in bucket `min(floor((v - m) / w), k - 1)`,
    and the edges are `m + w·i` for `i = 1..k-1` between `m` and `M`. If all
    values are equal, every edge is that value and the last bucket holds them
    all. Data with a NaN or an infinity (or a range beyond float64's) is
    bucketed by TensorBoard's own TensorFlow function.
    """
    data = np.asarray(data, dtype=np.float64).reshape(-1)
    k = bucket_count
    if data.size == 0:
        return np.zeros((k, 3), dtype=np.float64)
    low, high = data.min(), data.max()  # NaN if any value is
    spread = high - low
    if not np.isfinite(spread):
        from tensorboard.plugins.histogram import summary_v2

        return summary_v2._buckets(tf.constant(data), bucket_count=k).numpy()
    buckets = np.empty((k, 3), dtype=np.float64)
    if spread == 0:
        buckets[:, :2] = high
        buckets[:, 2] = 0.0
        buckets[-1, 2] = data.size
        return buckets
    width = spread / np.float64(k)
    indices = np.minimum(np.floor((data - low) / width).astype(np.int32), k - 1)
    buckets[:, 2] = np.bincount(indices, minlength=k)
    # tf.linspace(low, high, k + 1): low + delta * i in between, both ends exact;
    # delta = (high - low) / k is `width`.
    inner = low + width * np.arange(1, k, dtype=np.float64)
    buckets[0, 0] = low
    buckets[1:, 0] = inner
    buckets[:-1, 1] = inner
    buckets[-1, 1] = high
    return buckets


def image(tag, pixels):
    """A `Summary.Value` as `tf.summary.image(tag, pixels[None])` writes it.

    `pixels` is an `(height, width, channels)` uint8 array; the value is the
    string tensor `[width, height, png]`, the PNG encoded by TensorFlow as there.
    """
    height, width = pixels.shape[:2]
    png = tf.io.encode_png(pixels).numpy()
    tensor = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=3)]
        ),
        string_val=[str(width).encode(), str(height).encode(), png],
    )
    return summary_pb2.Summary.Value(tag=tag, tensor=tensor, metadata=_IMAGE_METADATA)
