"""`LinearRegression.fit` for in-memory arrays: tensors placed once, epochs run in-graph.

Keras 3 feeds NumPy arrays through a `tf.data` pipeline rebuilt every epoch, which for a
model this small is nearly all of the time. Here the arrays become tensors once per `fit`
(adopted without a copy when already aligned float32) and each epoch is one `tf.function`
call slicing (or, shuffled, gathering by a seeded Feistel permutation; on the host, in
threads, for large data) the batches for the model's own `train_step`, with
`keras.Model.fit`'s semantics. Traces are shared by models of one configuration.
Design notes: docs/design/fast-fit.md.
"""

from __future__ import annotations

import collections
import inspect
import json
import math
import os
import re
import warnings

import keras
import numpy as np
import tensorflow as tf

# Keras' own (private) helpers for what `keras.Model.fit` does around its loop are
# reached only through `_keras_internals`, which documents and tests each one.
from keras_linreg import _keras_internals, inputs

__all__ = ["FunctionCache", "applies", "epoch_permutation", "fit", "permuted_rows"]

_FEISTEL_ROUNDS = 4
_TRAIN_BATCH_HOOKS = (
    "on_batch_begin",
    "on_batch_end",
    "on_train_batch_begin",
    "on_train_batch_end",
)
_TEST_BATCH_HOOKS = ("on_test_batch_begin", "on_test_batch_end")


def applies(model, x, y, fit_arguments) -> bool:
    """Whether `fit(x, y, **fit_arguments)` takes the fast path (else Keras' `fit`).

    It does for `x`, `y` (and `sample_weight`) in memory as numeric arrays of one
    length, `shuffle` True or False, on the default strategy, without `run_eagerly`,
    Keras' debugging caps (`keras.config.max_epochs()`) or an invalid `batch_size` /
    `steps_per_epoch` (for which Keras raises its own error).
    """
    batch_size = fit_arguments.get("batch_size")
    steps_per_epoch = fit_arguments.get("steps_per_epoch")
    train = _in_memory((x, y, fit_arguments.get("sample_weight")))
    return not (
        train is None
        or train[1] is None
        or fit_arguments.get("shuffle", True) not in (True, False)
        or model.run_eagerly
        or tf.distribute.has_strategy()
        or _keras_internals.has_own_strategy(model)
        or keras.config.max_epochs()
        or keras.config.max_steps_per_epoch()
        or (batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1))
        or (steps_per_epoch is not None and (not isinstance(steps_per_epoch, int)
                                             or steps_per_epoch < 1))
    )


def fit(
    model,
    x,
    y,
    batch_size=None,
    epochs=1,
    verbose="auto",
    callbacks=None,
    validation_split=0.0,
    validation_data=None,
    shuffle=True,
    sample_weight=None,
    initial_epoch=0,
    steps_per_epoch=None,
    validation_steps=None,
    validation_batch_size=None,
    validation_freq=1,
):
    """`keras.Model.fit` on in-memory arrays, for inputs `applies` accepts.

    Args:
        model: The `LinearRegression` being fitted.
        x, y, ...: As in `keras.Model.fit` (checked by `inputs.check_fit_arguments`).

    Returns:
        The `History` callback, as `keras.Model.fit` does.
    """
    arguments = dict(
        batch_size=batch_size,
        epochs=epochs,
        verbose=verbose,
        callbacks=callbacks,
        validation_split=validation_split,
        validation_data=validation_data,
        shuffle=shuffle,
        initial_epoch=initial_epoch,
        steps_per_epoch=steps_per_epoch,
        validation_steps=validation_steps,
        validation_batch_size=validation_batch_size,
        validation_freq=validation_freq,
    )
    return _FastFit(model, _in_memory((x, y, sample_weight)), arguments).run()


class FunctionCache:
    """One model's traced fast-path functions, valid until the model is compiled again.

    `compile()` creates the optimizer state and the compiled metrics anew; the
    functions traced for the previous ones go. Each entry is a `_Bound`: a traced
    function and the model's own variables to run it on (its own trace, or one shared
    with another model of the same configuration).
    """

    def __init__(self):
        self._compiled = None
        self._functions = {}

    def functions(self, model):
        # The objects themselves (not ids, which may be reused): what the traces used.
        compiled = (model.optimizer, *model.metrics)
        if self._compiled is None or len(compiled) != len(self._compiled) or any(
            a is not b for a, b in zip(compiled, self._compiled, strict=True)
        ):
            self._compiled = compiled
            self._functions = {}
        return self._functions


class _Bound:
    """A concrete function and the resource handles to run it on (its captured inputs).

    A traced step reads and assigns the model's variables through resource handles that
    the graph takes as extra ("captured") inputs, so the same graph runs on another
    model's variables when it is given their handles in the same order. Calling the
    flat function directly also skips `tf.function`'s per-call signature matching
    (about a millisecond, which matters at one call per epoch).

    Private TensorFlow API: `ConcreteFunction._call_flat(inputs, captured_inputs)`, the
    call `ConcreteFunction.__call__` itself ends in (TensorFlow 2.21).
    """

    __slots__ = ("captures", "concrete")

    def __init__(self, concrete, captures):
        self.concrete = concrete
        self.captures = captures

    def __call__(self, tensors, seed, first, count):
        inputs = [t for t in tensors if t is not None] + [seed, first, count]
        return self.concrete._call_flat(inputs, captured_inputs=self.captures)


class _SharedTraces:
    """Traced epoch functions shared by every model of one configuration (an LRU cache).

    Tracing the epoch function of a new model (and TensorFlow optimising the graph at
    its first call) takes about 0.1 s, longer than 100 epochs of the tutorial's data. A
    graph depends on the model only through its configuration (Python values baked in
    as constants: the class, `get_config()`, `get_compile_config()`, `jit_compile`,
    the variables' shapes and dtypes) and its variables, which it takes as inputs. So a
    trace is kept here under its configuration with, for each captured input, the
    position of the variable in `_state_variables(model)`; another model of the same
    configuration runs it on its own variables at those positions.

    Only models whose configuration says everything about their graph share: the
    class is `keras_linreg`'s own (a subclass may override `train_step` with anything),
    no method is replaced on the instance, and every object in the configuration is a
    Keras or keras_linreg one (a custom metric, regularizer or schedule could hold
    Python state its config does not show). Any other model traces its own functions.
    A trace whose captures are not all the model's variables is not shared either.
    """

    size = 16

    def __init__(self):
        self._entries = collections.OrderedDict()
        self.hits = 0  # for tests: how often a trace was reused by another model

    def get(self, key):
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            self.hits += 1
        return entry

    def put(self, key, concrete, positions):
        self._entries[key] = (concrete, positions)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def clear(self):
        self._entries.clear()


_SHARED_TRACES = _SharedTraces()
# Functions Keras itself sets on a model instance (its traced-function slots and build
# wrappers); any other function on the instance may replace a method the graph calls.
_KERAS_INSTANCE_FUNCTIONS = frozenset(
    {"build", "quantize", "train_function", "test_function", "predict_function"}
)


def _state_variables(model):
    """Every variable a traced step may read or assign, in an order fixed by the
    configuration: weights, metrics, optimizer, divergence guard. Deduplicated."""
    guard = model._divergence_guard
    groups = [model.variables, [v for m in model.metrics for v in m.variables]]
    if model.optimizer is not None:
        groups.append(model.optimizer.variables)
    if guard._backups is not None:
        groups.append([guard._backups[path] for path in sorted(guard._backups)])
        groups.append([guard._state])
    seen, out = set(), []
    for group in groups:
        for variable in group:
            if id(variable) not in seen:
                seen.add(id(variable))
                out.append(variable)
    return out


def _handle(variable):
    """The resource handle a trace captures for a Keras (or TensorFlow) variable."""
    value = getattr(variable, "value", variable)
    return getattr(value, "handle", None)


def _configuration_key(model):
    """What a model's traced graphs depend on besides its variables, or None when that
    cannot be known from its configuration (then it traces its own functions)."""
    if type(model).__module__ != "keras_linreg.model" or any(
        callable(value) and not isinstance(value, (tf.Module, keras.Operation))
        and name not in _KERAS_INSTANCE_FUNCTIONS
        and (inspect.isfunction(value) or inspect.ismethod(value))
        for name, value in vars(model).items()
    ):
        return None
    try:
        # Names are made unique per instance (`linear_regression_2`) and only name scopes.
        config = dict(model.get_config(), name=None)
        compile_config = dict(model.get_compile_config() or {})
        optimizer = compile_config.get("optimizer")
        if isinstance(optimizer, dict) and isinstance(optimizer.get("config"), dict):
            optimizer = dict(optimizer, config=dict(optimizer["config"], name=None))
            compile_config["optimizer"] = optimizer
        config = json.dumps([config, compile_config], sort_keys=True, default=repr)
    except Exception:  # an unserialisable configuration: not shared
        return None
    modules = re.findall(r'"module": "([^"]*)"', config)
    if any(not (m == "keras" or m.startswith(("keras.", "keras_linreg"))) for m in modules):
        return None
    variables = tuple((tuple(v.shape), str(v.dtype)) for v in _state_variables(model))
    return (type(model), config, variables)


# ------------------------------------------------------------------------ inputs
def _in_memory(arrays):
    """`(x, y, sample_weight)` as arrays of one length, or None (not ours to take)."""
    converted = tuple(inputs.sliceable(a) for a in arrays)
    if any(a is NotImplemented for a in converted) or converted[0] is None:
        return None
    lengths = {int(a.shape[0]) for a in converted if a is not None and len(a.shape) > 0}
    if any(a is not None and len(a.shape) == 0 for a in converted) or len(lengths) != 1:
        return None  # Keras raises the right error for mismatched or scalar inputs.
    if lengths == {0}:
        return None
    return converted


_ALIGNMENT = 64  # bytes: what TensorFlow's CPU kernels require of a buffer (Eigen)


def _adoptable(array, dtype):
    """Whether TensorFlow can use `array`'s own memory as a tensor of `dtype`."""
    return (
        array.dtype == dtype
        and array.size > 0
        and array.flags.c_contiguous
        and array.flags.writeable  # DLPack cannot mark a buffer read-only
        and array.ctypes.data % _ALIGNMENT == 0
    )


def _to_tensor(array):
    """`array` as a tensor, floats as `floatx` like Keras' array adapter: adopted
    without a copy when its memory is already usable, else copied once.

    A C-contiguous array already of the tensor's dtype whose buffer is 64-byte aligned
    is adopted through DLPack, without a copy (the tensor shares the array's memory;
    `fit` never writes to it). Any other array is copied (and cast, in the same pass)
    once into a 64-byte aligned NumPy buffer and adopted the same way: TensorFlow's
    kernels need the alignment (an unaligned DLPack buffer aborts the process at the
    first kernel), and `tf.convert_to_tensor` of a NumPy array copies even an aligned
    one and holds *two* copies here (measured: +2x the array's bytes of resident
    memory, TensorFlow 2.21). NumPy's own large arrays come from `malloc`, 16 bytes
    past a page boundary, so they are copied.
    """
    if array is None:
        return None
    floatx = keras.config.floatx()
    if isinstance(array, np.ndarray):
        dtype = np.dtype(floatx if array.dtype.kind == "f" else array.dtype)
        try:
            if _adoptable(array, dtype):
                return tf.experimental.dlpack.from_dlpack(array.__dlpack__())
            raw = np.empty(array.size * dtype.itemsize + _ALIGNMENT, np.uint8)
            offset = (-raw.ctypes.data) % _ALIGNMENT
            aligned = raw[offset : offset + array.size * dtype.itemsize]
            aligned = aligned.view(dtype).reshape(array.shape)
            np.copyto(aligned, array, casting="unsafe")
            return tf.experimental.dlpack.from_dlpack(aligned.__dlpack__())
        except Exception:  # e.g. a dtype DLPack does not carry: TensorFlow's own copy
            return tf.convert_to_tensor(np.asarray(array, dtype=dtype))
    if array.dtype.is_floating and array.dtype != floatx:
        return tf.cast(array, floatx)
    return array


def _has_hooks(callbacks, hooks):
    """Whether a user callback overrides one of `hooks` (History and the progress bar
    also run when those hooks are called only once per execution)."""
    for callback in callbacks.callbacks:
        if isinstance(callback, (keras.callbacks.History, keras.callbacks.ProgbarLogger)):
            continue
        for name in hooks:
            if _keras_internals.overrides_hook(callback, name):
                return True
    return False


# ------------------------------------------------------------------ permutation
def _feistel_side(n):
    """`a = ceil(sqrt(n))`: the Feistel network permutes `[0, a * a) ⊇ [0, n)`."""
    return math.isqrt(n - 1) + 1


def _round_tables(seed, side, dtype):
    """The random round functions `[rounds, side]` of epoch `seed = (fit seed, epoch)`."""
    return tf.random.stateless_uniform(
        [_FEISTEL_ROUNDS, side], seed=seed, minval=0, maxval=side, dtype=dtype
    )


def _feistel(i, tables, side):
    """A bijection of `[0, side²)`: balanced Feistel rounds on `(i // side, i % side)`.

    Each round maps `(left, right) -> (right, (left + table_k[right]) mod side)`, which
    is invertible whatever the table, so the composition is a permutation.
    """
    left = i // side
    right = i - left * side
    for k in range(_FEISTEL_ROUNDS):
        left, right = right, tf.math.floormod(left + tf.gather(tables[k], right), side)
    return left * side + right


def permuted_rows(positions, tables, side, n):
    """Row index at each of `positions` (in `[0, n)`) of an epoch's permutation.

    Cycle walking: apply the Feistel bijection of `[0, side²)` until the value lands in
    `[0, n)`. That restricts a permutation of the larger set to one of `[0, n)`, and as
    `side² - n < 2 * side`, a walk rarely takes more than one extra round trip.
    """
    return _walk(_feistel(positions, tables, side), tables, side, n)


def _walk(rows, tables, side, n):
    """Cycle walking of Feistel images `rows`, applied to the rows outside `[0, n)` only.

    A bijection of `[0, side²)` sends at most `side² - n < 2 * side` positions outside
    `[0, n)`, so those are gathered, walked and put back: walking the whole array (a
    `tf.where` over all of it per round trip) made the permutation 2.5-7x slower when
    `n` is not a square (1.3 ms against 0.5 ms for 1e5 rows, 26 ms against 3.4 ms for
    1e6 + 1). The same integers either way.
    """
    if side * side == n:
        return rows  # nothing outside
    outside = tf.where(rows >= n)
    walked = tf.while_loop(
        lambda r: tf.reduce_any(r >= n),
        lambda r: (tf.where(r >= n, _feistel(r, tables, side), r),),
        (tf.gather_nd(rows, outside),),
    )[0]
    return tf.tensor_scatter_nd_update(rows, outside, walked)


# XLA fuses the ~20 integer ops per row into one loop: 3-6x faster than running them as
# separate TensorFlow ops (integers, so no rounding differs). With `side` and `n` compile-
# time constants it divides by multiplying (4-5x faster again, 0.013 s for 4e6 rows);
# one function per `(side, n)`, compiled once per shape of `positions`. The cycle walk
# (`_walk`, of a few rows with a data-dependent count: not XLA's static shapes) runs as
# TensorFlow ops around the compiled Feistel pass.
_PERMUTATION_FUNCTIONS = {}


def _permutation_function(side, n):
    """`positions, tables -> permuted_rows(positions, tables, side, n)`, the Feistel
    pass XLA-compiled."""
    key = (side, n)
    if key not in _PERMUTATION_FUNCTIONS:
        if len(_PERMUTATION_FUNCTIONS) >= 64:
            _PERMUTATION_FUNCTIONS.clear()

        feistel = tf.function(
            lambda positions, tables: _feistel(positions, tables, side),
            jit_compile=True,
            reduce_retracing=True,
        )

        def rows(positions, tables):
            return _walk(feistel(positions, tables), tables, side, n)

        _PERMUTATION_FUNCTIONS[key] = tf.function(rows, reduce_retracing=True, autograph=False)
    return _PERMUTATION_FUNCTIONS[key]


def _order_function(side, n, dtype):
    """`tables -> permuted_rows(range(n), tables, side, n)`: a whole pass's order, with
    the positions made inside the compiled pass (no `n`-sized input tensor)."""
    key = (side, n, dtype.name)
    if key not in _PERMUTATION_FUNCTIONS:
        if len(_PERMUTATION_FUNCTIONS) >= 64:
            _PERMUTATION_FUNCTIONS.clear()

        feistel = tf.function(
            lambda tables: _feistel(tf.range(n, dtype=dtype), tables, side), jit_compile=True
        )

        def order(tables):
            return _walk(feistel(tables), tables, side, n)

        _PERMUTATION_FUNCTIONS[key] = tf.function(order, autograph=False)
    return _PERMUTATION_FUNCTIONS[key]


def epoch_permutation(n, seed, epoch):
    """The row order `fit(shuffle=True)` uses in epoch `epoch` for fit seed `seed`.

    A pure function of `(n, seed, epoch)`: an int array holding each of `0 .. n-1` once.
    (For inspection and tests; training evaluates it batch by batch in-graph.)
    """
    side = _feistel_side(n)
    dtype = tf.int32 if side * side < 2**31 else tf.int64
    tables = _round_tables(tf.constant([seed, epoch], tf.int64), side, dtype)
    return _order_function(side, n, dtype)(tables).numpy()


class _Spec:
    """The shape and dtype of a batch of `array`, all `symbolic_build` reads of one."""

    __slots__ = ("dtype", "shape")

    def __init__(self, array):
        self.shape = (1, *array.shape[1:])
        self.dtype = _tensor_dtype(array) if isinstance(array, np.ndarray) else array.dtype


def _tensor_dtype(array):
    """The dtype an array trains as: `floatx` for floats (as Keras' array adapter)."""
    return np.dtype(keras.config.floatx() if array.dtype.kind == "f" else array.dtype)


# ------------------------------------------------------------------ host gather
# Shuffled epochs gather their rows on the host: `numpy.take` is 2-3x faster than
# TensorFlow's gather (issue 17; 0.33 ms against ~2 ms for 1e5 rows of 16 floats). From
# `_HOST_GATHER_BYTES` of data on, threads gather one chunk ahead while the graph trains
# on the previous chunk (on the other core). Between `_HOST_INLINE_BYTES` and that, the
# calling thread gathers each chunk itself just before its step: a thread's wake-up on
# a loaded 2-core machine (1-8 ms measured) costs more than the gather it would hide.
# Below, a call's fixed costs (the order's and the chunk's host round trips) outweigh
# the faster gather and the in-graph gather is used.
_HOST_GATHER_BYTES = 8 << 20
_HOST_INLINE_BYTES = 1 << 20
_HOST_CHUNK_ROWS = 1 << 18  # rows per gathered chunk (a whole number of batches)
_HOST_GATHER_THREADS = 2  # each gathers part of a chunk (the step waits on the gather)


def _data_bytes(train):
    return 4 * sum(
        0 if a is None else a.shape.num_elements() if isinstance(a, tf.Tensor) else a.size
        for a in train
    )


def _host_gather_threads(train):
    """How a shuffled fit of `train` gathers: None (in the graph), 0 (on the host, in
    the calling thread) or the number of gather threads."""
    if not all(a is None or isinstance(a, (np.ndarray, tf.Tensor)) for a in train):
        return None
    size = _data_bytes(train)
    if size >= _HOST_GATHER_BYTES:
        return _HOST_GATHER_THREADS
    return 0 if size >= _HOST_INLINE_BYTES else None


# One pool of gather threads for the process, started at the first threaded gather
# (a pool per `fit` took 1-8 ms to shut down on a loaded machine: two thread joins).
# A forked child does not inherit the threads, so it starts its own.
_EXECUTOR = {}


def _executor(threads):
    import concurrent.futures

    key = (os.getpid(), threads)
    if key not in _EXECUTOR:
        _EXECUTOR.clear()
        _EXECUTOR[key] = concurrent.futures.ThreadPoolExecutor(threads, "keras_linreg-gather")
    return _EXECUTOR[key]


class _Ready:
    """The future of work done in the calling thread (no gather threads)."""

    __slots__ = ("value",)

    def __init__(self, value=None):
        self.value = value

    def result(self):
        return self.value

    def cancel(self):
        return False


def _host_source(array):
    """`array` as the NumPy array the host gather reads: itself when it already has
    the training dtype (`floatx` for floats, as `_to_tensor`), else converted once."""
    if array is None:
        return None
    if isinstance(array, tf.Tensor):
        array = array.numpy()
    dtype = np.dtype(keras.config.floatx() if array.dtype.kind == "f" else array.dtype)
    return array if array.dtype == dtype else array.astype(dtype)


def _aligned_empty(shape, dtype):
    dtype = np.dtype(dtype)
    size = math.prod(shape) * dtype.itemsize
    raw = np.empty(size + _ALIGNMENT, np.uint8)
    offset = (-raw.ctypes.data) % _ALIGNMENT
    return raw[offset : offset + size].view(dtype).reshape(shape)


def _rows_view(array):
    """A C-contiguous array as a 1-D array of its rows (opaque `void` items): `take`
    then copies each row as one block (about 1.3x faster than row by row of floats)."""
    if array.ndim > 1 and array.flags.c_contiguous:
        return array.view(np.dtype((np.void, array.strides[0]))).reshape(array.shape[0])
    return array


class _HostGather:
    """Gathers the rows of shuffled batches on the host, one chunk ahead, in threads.

    Chunk `(key, first, count)` holds batches `first .. first + count - 1` of the epoch
    whose permutation is keyed by `key`: rows `epoch_permutation(n, seed, key)[first *
    batch_size : ...]` of each array, the order the in-graph gather uses (the same
    Feistel permutation, evaluated by the same compiled function), so training is the
    same whichever gathers. The rows go into one of two reused 64-byte aligned buffers,
    which TensorFlow adopts without a copy; the threads fill one while the graph reads
    the other. `requests` is the order `fit` will ask for chunks in; a request out of
    that order is gathered on the spot.

    The permutation of a whole pass is evaluated at once (one call of the compiled
    function instead of one per chunk and thread: ~0.5 ms each, more when it competes
    with the step for TensorFlow's threads), as a task of the gather threads queued
    one pass ahead: with the first chunk of pass `k`, pass `k + 1`'s order is queued,
    so the caller only runs the steps (computed by the caller, the first two passes'
    orders added 15-50 ms to the setup of a fit of 1e6-4e6 rows). A chunk's gather
    tasks wait for their pass's order, queued before them (first in, first out: no
    task waits on one queued after it). With no threads (`threads=0`) the caller does
    it all, each chunk when it is asked for, into a single buffer.
    """

    def __init__(self, arrays, n, batch_size, seed, requests, threads=_HOST_GATHER_THREADS):
        self.arrays = arrays
        self.n = n
        self.batch_size = batch_size
        self.seed = seed
        self.side = _feistel_side(n)
        self.index_dtype = tf.int32 if self.side * self.side < 2**31 else tf.int64
        self.orders = {}  # pass key -> the future of its order (NumPy), at most two kept
        self.last_key = None
        rows = max(1, _HOST_CHUNK_ROWS // batch_size) * batch_size
        rows = min(rows, n)
        self.buffers = [
            [None if a is None else _aligned_empty((rows, *a.shape[1:]), a.dtype)
             for a in arrays]
            for _ in range(2 if threads else 1)  # gathered in turn, or one at a time
        ]
        self.requests = iter(requests)
        self.ahead = collections.deque()  # requests read from `requests`, not yet gathered
        self.slot = 0
        self.threads = threads
        self.executor = _executor(threads) if threads else None
        self.pending = None
        if self.executor is not None:
            self._prefetch()

    def _next_request(self):
        if self.ahead:
            return self.ahead.popleft()
        return next(self.requests, None)

    def _next_key(self, key):
        """The key of the first pass after the requests of pass `key` (or None)."""
        for request in self.ahead:
            if request[0] != key:
                return request[0]
        for request in self.requests:
            self.ahead.append(request)
            if request[0] != key:
                return request[0]
        return None

    def _prefetch(self):
        request = self._next_request()
        self.pending = None if request is None else (request, self._gather(request, self.slot))

    def _order(self, key):
        """The future of pass `key`'s row order, `epoch_permutation(n, seed, key)`."""
        if key not in self.orders:
            while len(self.orders) >= 2:
                self.orders.pop(next(iter(self.orders)))
            if self.executor is None:
                self.orders[key] = _Ready(self._permutation(key))
            else:
                self.orders[key] = self.executor.submit(self._permutation, key)
        return self.orders[key]

    def _permutation(self, key):
        tables = _round_tables(
            tf.constant([self.seed, key], tf.int64), self.side, self.index_dtype
        )
        return _order_function(self.side, self.n, self.index_dtype)(tables).numpy()

    def _gather(self, request, slot):
        """Starts gathering chunk `request` into buffer `slot`, in `threads` parts (or
        gathers it, with no threads); returns `(futures, arrays, rows)`."""
        key, first, count = request
        start = first * self.batch_size
        stop = min((first + count) * self.batch_size, self.n)
        order = self._order(key)
        arrays = [None if b is None else b[: stop - start] for b in self.buffers[slot]]
        if self.executor is None:
            self._gather_rows(order, start, stop, 0, slot)
            return [_Ready()], arrays, stop - start
        bounds = np.linspace(start, stop, self.threads + 1).astype(int)
        futures = [
            self.executor.submit(self._gather_rows, order, low, high, low - start, slot)
            for low, high in zip(bounds[:-1], bounds[1:], strict=True)
            if low < high
        ]
        if key != self.last_key:
            # The pass's first chunk: queue the next pass's order behind it.
            self.last_key = key
            following = self._next_key(key)
            if following is not None:
                self._order(following)
        return futures, arrays, stop - start

    def _gather_rows(self, order, start, stop, offset, slot):
        """Rows `order.result()[start:stop]` of each array into buffer `slot` from row
        `offset` on."""
        rows = order.result()[start:stop].astype(np.intp)  # `take` casts others first
        for array, buffer in zip(self.arrays, self.buffers[slot], strict=True):
            if array is not None:
                # mode="clip": the indices are valid; "raise" would buffer `out` again.
                out = _rows_view(buffer)[offset : offset + len(rows)]
                np.take(_rows_view(array), rows, out=out, mode="clip")

    def get(self, request):
        """`(tensors, rows)` of chunk `request`; the buffer stays valid until the next
        `get` (the previous chunk's buffer is refilled meanwhile)."""
        if self.executor is None:  # gathered now, into the one buffer (its step is done)
            _, arrays, rows = self._gather(request, 0)
            return self._tensors(arrays), rows
        slot = self.slot
        if self.pending is None or self.pending[0] != request:
            # Not the chunk expected: let the threads finish, then gather it now.
            if self.pending is not None:
                for future in self.pending[1][0]:
                    future.result()
            self.pending = (request, self._gather(request, slot))
        futures, arrays, rows = self.pending[1]
        for future in futures:
            future.result()  # (raises what the thread raised)
        self.slot = 1 - slot
        self._prefetch()
        return self._tensors(arrays), rows

    @staticmethod
    def _tensors(arrays):
        return tuple(
            None if a is None else tf.experimental.dlpack.from_dlpack(a.__dlpack__())
            for a in arrays
        )

    def close(self):
        """Drops the chunks not gathered yet. A gather already running finishes in
        its thread, into this object's own buffers, which nothing reads any more."""
        self.requests = iter(())
        self.ahead.clear()
        if self.pending is not None:
            for future in self.pending[1][0]:
                future.cancel()
        for future in self.orders.values():
            future.cancel()  # a pass not started yet (a task waiting on it then raises)
        self.pending = None


# --------------------------------------------------------------------- the loop
class _FastFit:
    def __init__(self, model, train, arguments):
        self.model = model
        self.arguments = arguments
        _keras_internals.assert_compile_called(model, "fit")
        validation_data = arguments["validation_data"]
        validation_split = arguments["validation_split"]
        if validation_split and validation_data is None:
            train, validation_data = inputs.split_rows(train, validation_split)
        self.val_arrays = None
        if validation_data is not None:
            val = keras.utils.unpack_x_y_sample_weight(validation_data)
            self.val_arrays = _in_memory(val)
            if (
                self.val_arrays is None
                or self.val_arrays[1] is None
                or arguments["validation_steps"] is not None
            ):
                self.val_arrays = None
                self.validation_data = val  # to Keras' evaluate, as `fit` does
        self.has_validation = validation_data is not None
        self.batch_size = arguments["batch_size"] or 32
        self.n = int(train[0].shape[0])
        self.num_batches = -(-self.n // self.batch_size)
        self.steps_per_epoch = arguments["steps_per_epoch"]
        self.shuffle = bool(arguments["shuffle"]) and self.num_batches > 1
        # Placed once; everything below slices these. Shuffled epochs of large data
        # gather their batches on the host instead, from the arrays as they are.
        self.host = None
        self.gather_threads = _host_gather_threads(train) if self.shuffle else None
        if self.gather_threads is not None:
            self.host = tuple(_host_source(a) for a in train)
            self.train = None
        else:
            self.train = tuple(_to_tensor(a) for a in train)
        if self.val_arrays is not None:
            self.val = tuple(_to_tensor(a) for a in self.val_arrays)

    # -- compiled functions, cached on the model until it is compiled again
    def _functions(self):
        return self.model._fast_fit_functions.functions(self.model)

    def _run_steps(self, step, tensors, n, batch_size, shuffle, seed, first, count, reset):
        """Runs `count` steps from batch `first`; `reset`: reset the metrics first.

        Resetting in-graph, in the same call as the epoch's first steps, saves the
        per-epoch eager `model.reset_metrics()` (one small op per metric variable).
        """
        multi = count > 1
        first = tf.constant(first, tf.int32)
        count = tf.constant(count, tf.int32)
        signature = tuple(None if t is None else (t.dtype, tuple(t.shape[1:])) for t in tensors)
        jit_compile = bool(self.model.jit_compile)
        key = (step, n, batch_size, shuffle, multi, reset, jit_compile, signature)
        cache = self._functions()
        if key not in cache:
            cache[key] = self._bind(key, step, tensors, seed, first, count)
        return cache[key](tensors, seed, first, count)

    def _bind(self, key, step, tensors, seed, first, count):
        """The model's `_Bound` function for `key`: a shared trace run on the model's
        own variables when one of the same configuration exists, else a new trace."""
        model = self.model
        _, n, batch_size, shuffle, multi, reset, jit_compile, _ = key
        configuration = _configuration_key(model)
        variables = _state_variables(model) if configuration is not None else None
        if configuration is not None:
            shared = _SHARED_TRACES.get((configuration, key))
            if shared is not None:
                concrete, positions = shared
                return _Bound(concrete, [_handle(variables[i]) for i in positions])
        step_function = getattr(model, step)
        if jit_compile:
            # As Keras compiles each step with XLA (`compile(jit_compile=True)`, or
            # "auto" on an accelerator); the loop around it stays a TF while loop.
            step_function = tf.function(step_function, jit_compile=True, reduce_retracing=True)
        function = _make_steps_function(
            step_function,
            model.reset_metrics if reset else None,
            n,
            batch_size,
            shuffle,
            multi,
        )
        concrete = function.get_concrete_function(tensors, seed, first, count)
        captures = concrete.captured_inputs
        if configuration is not None:
            # The variables may be created by the trace (e.g. the guard's): list again.
            variables = _state_variables(model)
            position = {id(_handle(v)): i for i, v in enumerate(variables)}
            positions = [position.get(id(c)) for c in captures]
            if None not in positions and _configuration_key(model) == configuration:
                _SHARED_TRACES.put((configuration, key), concrete, positions)
        return _Bound(concrete, captures)

    # -- schedule
    def _epoch_schedule(self, epoch):
        """`(first batch, number of batches, shuffle key)` of absolute epoch `epoch`.

        Without `steps_per_epoch`, every epoch is one pass. With it (`k` steps), one pass
        over the data spans `ceil(num_batches / k)` epochs, as in Keras, where the last
        epoch of a pass stops at the end of the data; the permutation of a pass is keyed
        by the epoch it begins in. A pure function of `epoch`, so resuming is exact.
        """
        if not self.steps_per_epoch:
            return 0, self.num_batches, epoch
        k = self.steps_per_epoch
        per_pass = -(-self.num_batches // k)
        first = (epoch % per_pass) * k
        return first, min(k, self.num_batches - first), epoch - epoch % per_pass

    # -- shuffled epochs gathered on the host
    def _host_requests(self, initial_epoch, epochs, execution):
        """The sequence of `(epoch key, first batch, batches)` chunks `fit` will ask the
        host gather for, in order (the same split as `_host_steps` makes), so the
        gather can prepare the next one while the current one trains."""
        for epoch in range(initial_epoch, epochs):
            first, count, key = self._epoch_schedule(epoch)
            done = 0
            while done < count:
                chunk = min(execution, count - done)
                yield from self._host_chunks(key, first + done, chunk)
                done += chunk

    def _host_chunks(self, key, first, count):
        per_chunk = max(1, _HOST_CHUNK_ROWS // self.batch_size)
        for start in range(first, first + count, per_chunk):
            yield key, start, min(per_chunk, first + count - start)

    def _host_steps(self, epoch, first, count, reset):
        """Runs batches `first .. first + count - 1` of epoch `epoch`'s order, gathered
        on the host chunk by chunk, each chunk one call of the unshuffled steps."""
        key = self._epoch_schedule(epoch)[2]
        no_seed = tf.constant([0, 0], tf.int64)
        logs = None
        for request in self._host_chunks(key, first, count):
            tensors, rows = self.gather.get(request)
            logs = self._run_steps(
                "train_step", tensors, rows, self.batch_size, False, no_seed, 0,
                request[2], reset=reset and logs is None,
            )
        return logs

    # -- fit
    def run(self):
        model = self.model
        arguments = self.arguments
        epochs = arguments["epochs"]
        verbose = arguments["verbose"]
        callbacks = arguments["callbacks"]
        steps = self.steps_per_epoch or self.num_batches
        if not isinstance(callbacks, keras.callbacks.CallbackList):
            callbacks = keras.callbacks.CallbackList(
                callbacks,
                add_history=True,
                add_progbar=verbose != 0,
                verbose=verbose,
                epochs=epochs,
                steps=steps,
                model=model,
            )
        self.callbacks = callbacks
        hooks = _has_hooks(callbacks, _TRAIN_BATCH_HOOKS)
        execution = model.steps_per_execution if hooks else steps
        # The fit seed: one draw from Keras' global seed generator, which
        # `keras.utils.set_random_seed` resets (so seeded runs repeat).
        seed = 0
        if self.shuffle:
            seed = int(keras.random.randint((), 0, 2**31 - 1, dtype="int32"))

        model.stop_training = False
        self._functions()
        # Create every variable (weights, compiled metrics, optimizer) before tracing,
        # as Keras does under a strategy; a `tf.function` that creates variables on its
        # first call is traced twice.
        # Only the shapes and dtypes of a batch are read.
        arrays = self.host if self.host is not None else self.train
        _keras_internals.symbolic_build(
            model, data_batch=tuple(_Spec(a) for a in arrays if a is not None)
        )
        self.gather = None
        try:
            return self._loop(callbacks, epochs, execution, seed)
        finally:
            if self.gather is not None:
                self.gather.close()

    def _loop(self, callbacks, epochs, execution, seed):
        model = self.model
        arguments = self.arguments
        callbacks.on_train_begin()
        training_logs = None
        logs = {}
        initial_epoch = _keras_internals.initial_epoch(model, arguments["initial_epoch"])
        if self.host is not None:
            self.gather = _HostGather(
                self.host, self.n, self.batch_size, seed,
                self._host_requests(initial_epoch, epochs, execution), self.gather_threads,
            )
        for epoch in range(initial_epoch, epochs):
            # `model.reset_metrics()` runs in-graph at the start of the epoch's first call.
            callbacks.on_epoch_begin(epoch)
            first, count, key = self._epoch_schedule(epoch)
            epoch_seed = tf.constant([seed, key], tf.int64)
            done = 0
            while done < count:
                chunk = min(execution, count - done)
                callbacks.on_train_batch_begin(done)
                if self.gather is not None:
                    logs = self._host_steps(epoch, first + done, chunk, reset=done == 0)
                else:
                    logs = self._run_steps(
                        "train_step",
                        self.train,
                        self.n,
                        self.batch_size,
                        self.shuffle,
                        epoch_seed,
                        first + done,
                        chunk,
                        reset=done == 0,
                    )
                logs = _keras_internals.pythonify_logs(logs)
                callbacks.on_train_batch_end(done + chunk - 1, logs)
                done += chunk
                if model.stop_training:
                    break
            if self.steps_per_epoch and count < self.steps_per_epoch:
                warnings.warn(
                    "Your input ran out of data; interrupting training. Make sure that "
                    "your dataset or generator can generate at least "
                    "`steps_per_epoch * epochs` batches. You may need to use the "
                    "`.repeat()` function when building your dataset.",
                    stacklevel=2,
                )
            epoch_logs = dict(logs)
            if self.has_validation and _keras_internals.should_eval(
                model, epoch, arguments["validation_freq"]
            ):
                val_logs = self._validate()
                epoch_logs.update({f"val_{name}": value for name, value in val_logs.items()})
            callbacks.on_epoch_end(epoch, epoch_logs)
            training_logs = epoch_logs
            if model.stop_training:
                break

        if isinstance(model.optimizer, keras.optimizers.Optimizer) and epochs > 0:
            model.optimizer.finalize_variable_values(model.trainable_weights)
        _keras_internals.clear_eval_iterator(model)
        callbacks.on_train_end(logs=training_logs)
        return model.history

    # -- validation, as `fit` calls `evaluate(..., callbacks=callbacks)`
    def _validate(self):
        model = self.model
        arguments = self.arguments
        batch_size = arguments["validation_batch_size"] or self.batch_size
        if self.val_arrays is None:
            # Not arrays (or `validation_steps`): Keras' own evaluation, with the
            # iterator cached across epochs exactly as `keras.Model.fit` does.
            val_x, val_y, val_w = self.validation_data
            return _keras_internals.evaluate_cached(
                model,
                x=val_x,
                y=val_y,
                sample_weight=val_w,
                batch_size=batch_size,
                steps=arguments["validation_steps"],
                callbacks=self.callbacks,
            )
        callbacks = self.callbacks
        n = int(self.val[0].shape[0])
        steps = -(-n // batch_size)
        execution = (
            model.steps_per_execution if _has_hooks(callbacks, _TEST_BATCH_HOOKS) else steps
        )
        callbacks.on_test_begin()
        logs = {}
        done = 0
        no_seed = tf.constant([0, 0], tf.int64)
        while done < steps:
            chunk = min(execution, steps - done)
            callbacks.on_test_batch_begin(done)
            logs = self._run_steps(
                "test_step", self.val, n, batch_size, False, no_seed, done, chunk, done == 0
            )
            logs = _keras_internals.pythonify_logs(logs)
            callbacks.on_test_batch_end(done + chunk - 1, logs)
            done += chunk
        callbacks.on_test_end(logs)
        return logs


def _make_steps_function(step, reset_metrics, n, batch_size, shuffle, multi):
    """A `tf.function` running `step` (`model.train_step`/`test_step`) on batches
    `first .. first + count - 1` of the tensors `(x, y, sample_weight)` with `n` rows.

    Batch `b` is rows `b * batch_size .. min((b + 1) * batch_size, n) - 1` of the epoch's
    order: the rows themselves (a slice) without shuffling, else their images under the
    epoch's permutation (a gather). `reset_metrics` (if not None) runs first. Returns the
    last step's logs.
    """
    side = _feistel_side(n)
    index_dtype = tf.int32 if side * side < 2**31 else tf.int64

    def batch(tensors, index, first, b):
        start = b * batch_size
        stop = tf.minimum(start + batch_size, n)
        if index is None:
            rows = [t[start:stop] for t in tensors if t is not None]
        else:
            offset = (first - b) * -batch_size
            rows_of_batch = index[offset : offset + stop - start]
            rows = [tf.gather(t, rows_of_batch) for t in tensors if t is not None]
        return tuple(rows)

    def steps(tensors, seed, first, count):
        if reset_metrics is not None:
            reset_metrics()
        index = None
        if shuffle:
            # The rows of all `count` batches at once: one launch of the compiled
            # permutation per call, not one per batch (~1 ms each on small data).
            tables = _round_tables(seed, side, index_dtype)
            start = tf.cast(first * batch_size, index_dtype)
            stop = tf.minimum(tf.cast((first + count) * batch_size, index_dtype), n)
            index = _permutation_function(side, n)(tf.range(start, stop), tables)
        logs = step(batch(tensors, index, first, first))
        if multi:
            # The first step is peeled off the loop: its logs give the loop's structure.
            _, logs = tf.while_loop(
                lambda b, _: b < first + count,
                lambda b, logs: (b + 1, step(batch(tensors, index, first, b))),
                (first + 1, logs),
            )
        return logs

    return tf.function(steps, reduce_retracing=True, autograph=False)
