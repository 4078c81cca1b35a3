"""Decoder of the binary ranking answer (``application/x-featstore-rank``, version 2;
docs/wire.md, "Binary ranking answer").

Each fixed-width column (int64, float64, float32, bool, float32 vectors) becomes one numpy
array over the answer's bytes (``numpy.frombuffer``: no copy, no Python work per value);
statuses and event times are numpy arrays too, built the first time a column's
``status`` or ``event_time`` is read (a caller that takes only the values pays nothing
for them). Only string and bytes columns, whose values are variable-length, are decoded
value by value. Every length is checked against the bytes left while decoding: a
truncated or malformed answer raises :class:`DecodeError`; a per-row time index beyond
the answer's times raises it when that column's ``event_time`` is first read.
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
_F32 = np.dtype("<f4")
_I64 = struct.Struct("<q")
_U64 = struct.Struct("<Q")
_HAS_VALUE = np.zeros(256, dtype=bool)
for _c in VALUE_STATUSES:
    _HAS_VALUE[_c] = True


class Column:
    """One candidate column: a value, a status letter and an event time per candidate.

    ``status`` and ``event_time`` are decoded from the answer's bytes when first read."""

    __slots__ = ("name", "feature", "dtype", "dim", "values", "_rows", "_status", "_status_src", "_event_time", "_time_src")

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

    def __init__(self, name: str, feature: str, dtype: str, dim: int, values: np.ndarray, rows: int, status_src: Any, time_src: Any):
        self.name = name
        self.feature = feature
        self.dtype = dtype
        self.dim = dim
        self.values = values
        self._rows = rows
        self._status: np.ndarray | None = None
        self._status_src = status_src
        self._event_time: np.ndarray | None = None
        self._time_src = time_src

    @property
    def status(self) -> np.ndarray:
        """``uint8`` status letters (``ord("P")``, ...; docs/wire.md "Statuses")."""
        if self._status is None:
            src = self._status_src
            # An ``int``: one letter for every row; else the per-row letters.
            self._status = np.full(self._rows, src, dtype=np.uint8) if isinstance(src, int) else src
        return self._status

    @property
    def event_time(self) -> np.ndarray:
        """``int64`` event times, ms since the epoch; :data:`NO_TIME` where none."""
        if self._event_time is None:
            self._event_time = _event_times(self.name, self._rows, self._time_src)
        return self._event_time

    @property
    def has_value(self) -> np.ndarray:
        """True where the status carries a value (``P``, ``S``, ``D``)."""
        return _HAS_VALUE[self.status]

    def statuses(self) -> list[str]:
        """The status letters as text (one Python string per row)."""
        return list(self.status.tobytes().decode("ascii"))

    def __repr__(self) -> str:
        return f"Column(name={self.name!r}, feature={self.feature!r}, dtype={self.dtype!r}, rows={self._rows})"


def _event_times(name: str, rows: int, src: Any) -> np.ndarray:
    """A column's event times from its time source: ``(times, index)`` for one index for
    every row, ``(times, indexes, none_index)`` for per-row indexes."""
    times = src[0]
    n_times = len(times)
    if len(src) == 2:
        return np.full(rows, NO_TIME if src[1] is None else times[src[1]], dtype=np.int64)
    idx = src[1].astype(np.int64)
    idx[idx == src[2]] = n_times
    if rows and int(idx.max(initial=0)) > n_times:
        raise DecodeError(f"column {name!r}: time index beyond the {n_times} times")
    return np.append(times, NO_TIME)[idx]


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


def _texts(r: _Reader, n: int) -> list[str]:
    """``n`` length-prefixed UTF-8 texts (the candidate ids), in one tight loop; on any
    error, the checked reader decodes them again from the start to raise it."""
    buf, start, end = r.buf, r.pos, r.end
    unpack = _U32.unpack_from
    out = []
    append = out.append
    pos = start
    try:
        for _ in range(n):
            (k,) = unpack(buf, pos)
            pos += 4
            append(buf[pos : pos + k].decode("utf-8"))
            pos += k
    except (struct.error, UnicodeDecodeError):
        pos = end + 1
    if pos > end:
        r.pos = start
        return [r.text() for _ in range(n)]
    r.pos = pos
    return out


def _headers(r: _Reader, n: int) -> list[tuple[str, str, int, int]]:
    """``n`` column headers, in one tight loop; on any error, the checked reader
    decodes them again from the start to raise it."""
    buf, start, end = r.buf, r.pos, r.end
    unpack = _U32.unpack_from
    out = []
    pos = start
    try:
        for _ in range(n):
            (k,) = unpack(buf, pos)
            name = buf[pos + 4 : pos + 4 + k].decode("utf-8")
            pos += 4 + k
            (k,) = unpack(buf, pos)
            feature = buf[pos + 4 : pos + 4 + k].decode("utf-8")
            pos += 4 + k
            tag = buf[pos]
            (dim,) = unpack(buf, pos + 1)
            pos += 5
            if tag not in _DTYPE_NAMES:
                raise DecodeError(f"column {name!r}: unknown dtype tag {tag}")
            out.append((name, feature, tag, dim))
    except (struct.error, UnicodeDecodeError, IndexError):
        pos = end + 1
    if pos > end:
        r.pos = start
        return [_column_header(r) for _ in range(n)]
    r.pos = pos
    return out


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
    headers = _headers(r, n_cols)
    n_rows = r.u32()
    ids = _texts(r, n_rows)
    columns: dict[str, Column] = {}
    buf, end = r.buf, r.end
    u8_dtype = np.dtype("u1")
    for name, feature, tag, dim in headers:
        pos = r.pos
        # Statuses: mode 0, one letter per row; mode 1, one letter for every row.
        if pos + 2 > end:
            r.need(2)
        mode = buf[pos]
        if mode == 0:
            if pos + 1 + n_rows > end:
                r.need(1 + n_rows)
            status_src: Any = np.frombuffer(buf, dtype=u8_dtype, count=n_rows, offset=pos + 1)
            pos += 1 + n_rows
        elif mode == 1:
            status_src = buf[pos + 1]
            pos += 2
        else:
            raise DecodeError(f"column {name!r}: status mode {mode}")
        # Time indexes: mode 0, one per row; mode 1, one for every row.
        if pos + 1 > end:
            r.pos = pos
            r.need(1)
        mode = buf[pos]
        pos += 1
        if mode == 0:
            if pos + n_rows * width > end:
                r.pos = pos
                r.need(n_rows * width)
            time_src: tuple[Any, ...] = (times, np.frombuffer(buf, dtype=index_dtype, count=n_rows, offset=pos), none_index)
            pos += n_rows * width
        elif mode == 1:
            if pos + width > end:
                r.pos = pos
                r.need(width)
            one = buf[pos] if width == 1 else _U32.unpack_from(buf, pos)[0]
            pos += width
            if one == none_index:
                time_src = (times, None)
            elif one < n_times:
                time_src = (times, one)
            else:
                raise DecodeError(f"column {name!r}: time index {one} of {n_times}")
        else:
            raise DecodeError(f"column {name!r}: time index mode {mode}")
        r.pos = pos
        if tag in _FIXED:
            values = r.array(_FIXED[tag][1], n_rows)
            if tag == 4:
                values = values.view(np.bool_)
        elif tag == 7:
            values = r.array(_F32, n_rows * dim).reshape(n_rows, dim)
        else:
            status = np.full(n_rows, status_src, dtype=np.uint8) if isinstance(status_src, int) else status_src
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
        columns[name] = Column(name, feature, _DTYPE_NAMES[tag], dim, values, n_rows, status_src, time_src)
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
