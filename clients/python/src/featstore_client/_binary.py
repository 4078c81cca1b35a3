"""Decoder of the binary ranking answer (``application/x-featstore-rank``, version 2;
docs/wire.md, "Binary ranking answer").

Each fixed-width column (int64, float64, float32, bool, float32 vectors) becomes one numpy
array over the answer's bytes (``numpy.frombuffer``: no copy, no Python work per value);
statuses and event times are numpy arrays too. Only string and bytes columns, whose
values are variable-length, are decoded value by value. Every length is checked against
the bytes left: a truncated or malformed answer raises :class:`DecodeError`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import DecodeError

MAGIC = b"FSRK"
VERSION = 2
#: ``event_time`` of a value that has none (not found, defaulted, ...).
NO_TIME = np.iinfo(np.int64).min
#: Status letters that carry a value (present, stale, defaulted).
VALUE_STATUSES = b"PSD"

_FIXED = {1: ("int64", np.dtype("<i8")), 2: ("float64", np.dtype("<f8")), 3: ("float32", np.dtype("<f4")), 4: ("bool", np.dtype("u1"))}
_DTYPE_NAMES = {1: "int64", 2: "float64", 3: "float32", 4: "bool", 5: "string", 6: "bytes", 7: "float32_vector"}
_U32 = struct.Struct("<I")
_I64 = struct.Struct("<q")
_U64 = struct.Struct("<Q")
_HAS_VALUE = np.zeros(256, dtype=bool)
for _c in VALUE_STATUSES:
    _HAS_VALUE[_c] = True


@dataclass
class Column:
    """One candidate column: a value, a status letter and an event time per candidate."""

    name: str
    """The name as asked."""
    feature: str
    """The feature served, ``name@version``."""
    dtype: str
    """``int64``, ``float64``, ``float32``, ``bool``, ``string``, ``bytes`` or ``float32_vector``."""
    dim: int
    """Vector dimension (0 for other dtypes)."""
    values: np.ndarray
    """Shape ``(rows,)``, or ``(rows, dim)`` for vectors; the dtype's zero where the status
    carries no value; an object array (``None`` where no value) for strings and bytes."""
    status: np.ndarray
    """``uint8`` status letters (``ord("P")``, ...; docs/wire.md "Statuses")."""
    event_time: np.ndarray
    """``int64`` event times, ms since the epoch; :data:`NO_TIME` where none."""

    @property
    def has_value(self) -> np.ndarray:
        """True where the status carries a value (``P``, ``S``, ``D``)."""
        return _HAS_VALUE[self.status]

    def statuses(self) -> list[str]:
        """The status letters as text (one Python string per row)."""
        return list(self.status.tobytes().decode("ascii"))


@dataclass
class Cell:
    """One context value."""

    name: str
    feature: str
    dtype: str
    status: str
    event_time: int | None
    value: Any


@dataclass
class RankAnswer:
    """A decoded ranking answer."""

    complete: bool
    now_ms: int
    service: str | None
    candidate_type: str
    context_entities: dict[str, str]
    context: dict[str, Cell]
    ids: list[str]
    columns: dict[str, Column]
    versions: dict[str, int] = field(default_factory=dict)
    defaults: dict[str, int] = field(default_factory=dict)

    def to_pandas(self, statuses: bool = False):
        """A DataFrame indexed by candidate id, one column per candidate column.

        Numbers without a value are NaN (floats) or ``<NA>`` (int64, bool: pandas'
        nullable types); vectors are one numpy row each; with ``statuses`` each column
        ``c`` is followed by ``c__status``."""
        import pandas as pd

        data: dict[str, Any] = {}
        for name, col in self.columns.items():
            has = col.has_value
            if col.dtype in ("float32", "float64"):
                data[name] = np.where(has, col.values, np.nan).astype(col.values.dtype)
            elif col.dtype == "int64":
                data[name] = pd.arrays.IntegerArray(col.values.copy(), ~has)
            elif col.dtype == "bool":
                data[name] = pd.arrays.BooleanArray(col.values.astype(bool), ~has)
            elif col.dtype == "float32_vector":
                data[name] = [row if h else None for row, h in zip(col.values, has)]
            else:
                data[name] = col.values
            if statuses:
                data[f"{name}__status"] = col.statuses()
        return pd.DataFrame(data, index=pd.Index(self.ids, name=self.candidate_type))

    def to_arrow(self):
        """A ``pyarrow.Table``: ``id`` then one column per candidate column, null where
        the status carries no value (vectors as fixed-size lists)."""
        import pyarrow as pa

        arrays = [pa.array(self.ids, type=pa.string())]
        names = ["id"]
        for name, col in self.columns.items():
            mask = ~col.has_value
            if col.dtype == "float32_vector":
                flat = pa.array(col.values.reshape(-1), type=pa.float32())
                arr = pa.FixedSizeListArray.from_arrays(flat, col.dim, mask=pa.array(mask))
            elif col.dtype == "bool":
                arr = pa.array(col.values.astype(bool), mask=mask)
            elif col.dtype in ("string", "bytes"):
                arr = pa.array(list(col.values), type=pa.string() if col.dtype == "string" else pa.binary())
            else:
                arr = pa.array(col.values, mask=mask)
            arrays.append(arr)
            names.append(name)
        return pa.Table.from_arrays(arrays, names=names)


class _Reader:
    __slots__ = ("buf", "pos", "end")

    def __init__(self, buf: bytes):
        self.buf = buf
        self.pos = 0
        self.end = len(buf)

    def need(self, n: int) -> int:
        start = self.pos
        if n < 0 or start + n > self.end:
            raise DecodeError(f"truncated answer: need {n} bytes at offset {start}, {self.end - start} left")
        self.pos = start + n
        return start

    def u8(self) -> int:
        return self.buf[self.need(1)]

    def u32(self) -> int:
        return _U32.unpack_from(self.buf, self.need(4))[0]

    def i64(self) -> int:
        return _I64.unpack_from(self.buf, self.need(8))[0]

    def u64(self) -> int:
        return _U64.unpack_from(self.buf, self.need(8))[0]

    def raw(self, n: int) -> bytes:
        start = self.need(n)
        return self.buf[start : start + n]

    def text(self) -> str:
        try:
            return self.raw(self.u32()).decode("utf-8")
        except UnicodeDecodeError as e:
            raise DecodeError(f"invalid UTF-8 text: {e}") from None

    def array(self, dtype: np.dtype, count: int) -> np.ndarray:
        start = self.need(count * dtype.itemsize)
        return np.frombuffer(self.buf, dtype=dtype, count=count, offset=start)


def _time_index(r: _Reader, width: int) -> int | None:
    if width == 1:
        i = r.u8()
        return None if i == 0xFF else i
    i = r.u32()
    return None if i == 0xFFFFFFFF else i


def _column_header(r: _Reader) -> tuple[str, str, int, int]:
    name = r.text()
    feature = r.text()
    tag = r.u8()
    dim = r.u32()
    if tag not in _DTYPE_NAMES:
        raise DecodeError(f"column {name!r}: unknown dtype tag {tag}")
    return name, feature, tag, dim


def _scalar(r: _Reader, tag: int, dim: int) -> Any:
    if tag in _FIXED:
        dtype = _FIXED[tag][1]
        v = r.array(dtype, 1)[0].item()
        return bool(v) if tag == 4 else v
    if tag == 5:
        return r.text()
    if tag == 6:
        return r.raw(r.u32())
    n = r.u32()
    return r.array(np.dtype("<f4"), n).copy()


def decode_rank(buf: bytes) -> RankAnswer:
    """Decodes a binary ranking answer."""
    r = _Reader(bytes(buf))
    if r.raw(4) != MAGIC:
        raise DecodeError("not a featstore ranking answer (bad magic)")
    version = r.u8()
    if version != VERSION:
        raise DecodeError(f"ranking answer version {version}; this client reads {VERSION}")
    complete = r.u8()
    width = r.u8()
    if width not in (1, 4):
        raise DecodeError(f"time_width {width} is neither 1 nor 4")
    none_index = 0xFF if width == 1 else 0xFFFFFFFF
    index_dtype = np.dtype("u1") if width == 1 else np.dtype("<u4")
    now_ms = r.i64()
    service = r.text() or None
    candidate_type = r.text()
    context_entities = {}
    for _ in range(r.u32()):
        t = r.text()
        context_entities[t] = r.text()
    n_times = r.u32()
    times = r.array(np.dtype("<i8"), n_times)
    # Index n_times (and the "none" index, clipped there) reads NO_TIME.
    times_ext = np.append(times, NO_TIME)

    n_ctx = r.u32()
    ctx_headers = [_column_header(r) for _ in range(n_ctx)]
    context: dict[str, Cell] = {}
    for name, feature, tag, dim in ctx_headers:
        status = r.u8()
        ti = _time_index(r, width)
        value = _scalar(r, tag, dim) if status in VALUE_STATUSES else None
        if ti is not None and ti >= n_times:
            raise DecodeError(f"context column {name!r}: time index {ti} of {n_times}")
        context[name] = Cell(name, feature, _DTYPE_NAMES[tag], chr(status), None if ti is None else int(times[ti]), value)

    n_cols = r.u32()
    headers = [_column_header(r) for _ in range(n_cols)]
    n_rows = r.u32()
    ids = [r.text() for _ in range(n_rows)]
    columns: dict[str, Column] = {}
    for name, feature, tag, dim in headers:
        mode = r.u8()
        if mode == 0:
            status = r.array(np.dtype("u1"), n_rows)
        elif mode == 1:
            status = np.full(n_rows, r.u8(), dtype=np.uint8)
        else:
            raise DecodeError(f"column {name!r}: status mode {mode}")
        mode = r.u8()
        if mode == 0:
            idx = r.array(index_dtype, n_rows).astype(np.int64)
        elif mode == 1:
            one = r.array(index_dtype, 1).astype(np.int64)[0]
            idx = np.full(n_rows, one, dtype=np.int64)
        else:
            raise DecodeError(f"column {name!r}: time index mode {mode}")
        idx[idx == none_index] = n_times
        if n_rows and int(idx.max(initial=0)) > n_times:
            raise DecodeError(f"column {name!r}: time index beyond the {n_times} times")
        event_time = times_ext[idx]
        if tag in _FIXED:
            values = r.array(_FIXED[tag][1], n_rows)
            if tag == 4:
                values = values.view(np.bool_)
        elif tag == 7:
            values = r.array(np.dtype("<f4"), n_rows * dim).reshape(n_rows, dim)
        else:
            values = np.empty(n_rows, dtype=object)
            for row in np.flatnonzero(_HAS_VALUE[status]):
                raw = r.raw(r.u32())
                if tag == 5:
                    try:
                        values[row] = raw.decode("utf-8")
                    except UnicodeDecodeError as e:
                        raise DecodeError(f"column {name!r}: invalid UTF-8: {e}") from None
                else:
                    values[row] = raw
        columns[name] = Column(name, feature, _DTYPE_NAMES[tag], dim, values, status, event_time)
    versions = {}
    for _ in range(r.u32()):
        g = r.text()
        versions[g] = r.u64()
    defaults = {}
    for _ in range(r.u32()):
        f = r.text()
        defaults[f] = r.u64()
    if r.pos != r.end:
        raise DecodeError(f"{r.end - r.pos} bytes after the end of the answer")
    return RankAnswer(
        complete=bool(complete),
        now_ms=now_ms,
        service=service,
        candidate_type=candidate_type,
        context_entities=context_entities,
        context=context,
        ids=ids,
        columns=columns,
        versions=versions,
        defaults=defaults,
    )
