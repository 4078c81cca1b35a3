"""The HTTP client: one keep-alive connection per :class:`Client` (not thread-safe: use
one client per thread)."""

from __future__ import annotations

import http.client
import json
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence
from urllib.parse import quote, urlencode, urlsplit

from ._binary import RankAnswer, decode_rank
from .errors import ConnectionFailed, DecodeError, error_for

BINARY_CONTENT_TYPE = "application/x-featstore-rank"


def _segment(text: str) -> str:
    # Everything but RFC 3986 unreserved characters is escaped (docs/wire.md "Paths").
    return quote(text, safe="-_.~")


@dataclass(frozen=True)
class Reading:
    """One feature of a single-entity read."""

    name: str
    status: str
    value: Any
    event_time: int | None
    age_ms: int | None


@dataclass(frozen=True)
class FeatureVector:
    """The answer of :meth:`Client.get_features`: readings in the order asked."""

    entity_type: str
    entity_id: str
    features: dict[str, Reading]
    versions: dict[str, int]

    def values(self) -> dict[str, Any]:
        """Name to value (``None`` where the status carries none)."""
        return {n: r.value for n, r in self.features.items()}


@dataclass(frozen=True)
class PushResult:
    """Counts of a push (docs/wire.md, "Push streamed events")."""

    accepted: int
    ignored_older: int
    values_written: int
    duplicates: int
    aggregate_updates: int
    late_for_aggregates: int


class Client:
    """A featstore server at ``url`` (``http://host:port``).

    Every method raises a :class:`featstore_client.errors.ServerError` subclass for an
    error answer, :class:`~featstore_client.errors.ConnectionFailed` when the server
    cannot be reached, and :class:`~featstore_client.errors.DecodeError` for an answer
    that does not follow the wire format.
    """

    def __init__(self, url: str = "http://127.0.0.1:7070", timeout: float = 10.0):
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"featstore URL must be http://host[:port], not {url!r}")
        self._host = parts.hostname
        self._port = parts.port or 80
        self._timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        """Closes the connection (a later call opens a new one)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ---------------------------------------------------------------

    def _send(self, method: str, path: str, body: bytes | None, accept: str | None) -> tuple[int, http.client.HTTPResponse, bytes]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if accept:
            headers["Accept"] = accept
        for attempt in (0, 1):
            reused = self._conn is not None
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
            try:
                self._conn.request(method, path, body=body, headers=headers)
                resp = self._conn.getresponse()
                data = resp.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as e:
                self.close()
                # A kept-alive connection the server closed meanwhile: retry once on a
                # new one. Every featstore write is harmless to repeat (docs/wire.md).
                if reused and attempt == 0:
                    continue
                raise ConnectionFailed(f"{method} {path}: {e}") from e
            except OSError as e:
                self.close()
                raise ConnectionFailed(f"{method} {path}: {e}") from e
            if resp.getheader("connection", "").lower() == "close":
                self.close()
            return resp.status, resp, data
        raise ConnectionFailed(f"{method} {path}: connection closed")  # pragma: no cover

    def _call(self, method: str, path: str, payload: Any = None, accept: str | None = None) -> tuple[http.client.HTTPResponse, bytes]:
        body = None if payload is None else json.dumps(payload, allow_nan=False).encode()
        status, resp, data = self._send(method, path, body, accept)
        if status >= 400:
            try:
                decoded: Any = json.loads(data)
            except ValueError:
                decoded = data.decode("utf-8", "replace")
            retry = resp.getheader("retry-after")
            raise error_for(status, decoded, float(retry) if retry and retry.isdigit() else None)
        return resp, data

    def _json(self, method: str, path: str, payload: Any = None) -> Any:
        _, data = self._call(method, path, payload)
        try:
            return json.loads(data)
        except ValueError as e:
            raise DecodeError(f"{method} {path}: answer is not JSON: {e}") from None

    # -- reads -------------------------------------------------------------------

    def get_features(self, entity_type: str, entity_id: str, names: Sequence[str]) -> FeatureVector:
        """One entity's features (``GET /v1/features/{type}/{id}``), in the order asked."""
        path = f"/v1/features/{_segment(entity_type)}/{_segment(entity_id)}?" + urlencode({"names": ",".join(names)})
        a = self._json("GET", path)
        features = {
            f["name"]: Reading(f["name"], f["status"], f["value"], f["event_time"], f["age_ms"]) for f in a["features"]
        }
        return FeatureVector(a["entity_type"], a["entity_id"], features, dict(a.get("versions", {})))

    def rank(
        self,
        candidate_type: str,
        candidates: Sequence[str],
        features: Sequence[str] | None = None,
        *,
        service: str | None = None,
        context: Mapping[str, str] | None = None,
        deadline_ms: int | None = None,
    ) -> RankAnswer:
        """A ranking read (``POST /v1/rank``): the context's features once and one row per
        candidate, decoded from the binary answer into numpy arrays per column. Give
        ``features`` (names, in answer order) or ``service``."""
        if (features is None) == (service is None):
            raise ValueError("give either features or service")
        body: dict[str, Any] = {
            "context": dict(context or {}),
            "candidates": {"entity_type": candidate_type, "ids": list(candidates)},
        }
        if features is not None:
            body["features"] = list(features)
        else:
            body["service"] = service
        if deadline_ms is not None:
            body["deadline_ms"] = deadline_ms
        resp, data = self._call("POST", "/v1/rank", body, accept=BINARY_CONTENT_TYPE)
        if not (resp.getheader("content-type") or "").startswith(BINARY_CONTENT_TYPE):
            raise DecodeError(f"expected {BINARY_CONTENT_TYPE}, got {resp.getheader('content-type')}")
        return decode_rank(data)

    def rank_json(self, body: Mapping[str, Any]) -> Any:
        """A ranking read answered as JSON (docs/wire.md, "JSON ranking answer")."""
        return self._json("POST", "/v1/rank", dict(body))

    # -- writes ------------------------------------------------------------------

    def push(
        self,
        events: Iterable[Mapping[str, Any]] | Any,
        *,
        entity_type: str | None = None,
        id_column: str = "entity_id",
        time_column: str = "event_time",
    ) -> PushResult:
        """Pushes streamed events (``POST /v1/push``), all or nothing.

        ``events`` is an iterable of event dicts (``entity_type``, ``entity_id``,
        ``event_time``, ``features``, optional ``event_id``) or a pandas DataFrame: one
        event per row, of ``entity_type``, keyed by ``id_column``, timed by
        ``time_column`` (epoch ms, or datetimes), every other column a feature (an
        ``event_id`` column is sent as the event id). NaN and missing values are sent
        as explicit nulls; bytes as hex; numpy vectors as lists."""
        if hasattr(events, "to_dict") and hasattr(events, "columns"):
            if entity_type is None:
                raise ValueError("pushing a DataFrame needs entity_type")
            payload = _frame_events(events, entity_type, id_column, time_column)
        else:
            payload = [_clean_event(e) for e in events]
        a = self._json("POST", "/v1/push", {"events": payload})
        return PushResult(**{k: int(a[k]) for k in PushResult.__dataclass_fields__})

    # -- registry ----------------------------------------------------------------

    def feature_definitions(
        self,
        *,
        entity_type: str | None = None,
        owner: str | None = None,
        tag: str | None = None,
        name: str | None = None,
        group: str | None = None,
    ) -> list[dict[str, Any]]:
        """Registered feature definitions matching every filter given."""
        filters = {k: v for k, v in dict(entity_type=entity_type, owner=owner, tag=tag, name=name, group=group).items() if v is not None}
        path = "/v1/feature-definitions" + ("?" + urlencode(filters) if filters else "")
        return list(self._json("GET", path)["features"])

    def groups(self) -> list[dict[str, Any]]:
        """Feature groups and their active version."""
        return list(self._json("GET", "/v1/groups")["groups"])

    def entity_types(self) -> list[dict[str, Any]]:
        """Composite entity types."""
        return list(self._json("GET", "/v1/entity-types")["entity_types"])

    def on_demand_features(self) -> list[dict[str, Any]]:
        """On-demand features."""
        return list(self._json("GET", "/v1/on-demand-features")["on_demand"])

    def feature_services(self) -> list[dict[str, Any]]:
        """Feature services (with ``live``)."""
        return list(self._json("GET", "/v1/feature-services")["services"])

    def lineage(self) -> list[dict[str, Any]]:
        """Which services and on-demand features use which features."""
        return list(self._json("GET", "/v1/lineage")["features"])


def _json_value(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, float):
        return None if math.isnan(v) else v
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex()
    if hasattr(v, "tolist"):  # numpy scalars and arrays
        return _json_value(v.tolist())
    if isinstance(v, (list, tuple)):
        return [_json_value(x) for x in v]
    try:
        import pandas as pd

        if v is pd.NA or v is pd.NaT:
            return None
    except ImportError:  # pragma: no cover
        pass
    return v


def _clean_event(e: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(e)
    out["features"] = {k: _json_value(v) for k, v in dict(e["features"]).items()}
    t = out.get("event_time")
    if hasattr(t, "timestamp"):
        out["event_time"] = int(round(t.timestamp() * 1000))
    return out


def _frame_events(df: Any, entity_type: str, id_column: str, time_column: str) -> list[dict[str, Any]]:
    import pandas as pd

    for c in (id_column, time_column):
        if c not in df.columns:
            raise ValueError(f"DataFrame has no column {c!r}")
    times = df[time_column]
    if pd.api.types.is_datetime64_any_dtype(times):
        ts = pd.to_datetime(times, utc=True)
        ms = ((ts - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)).tolist()
    else:
        ms = [int(x) for x in times.tolist()]
    ids = [str(x) for x in df[id_column].tolist()]
    event_ids = df["event_id"].tolist() if "event_id" in df.columns else None
    feature_cols = [c for c in df.columns if c not in (id_column, time_column, "event_id")]
    columns = {c: [_json_value(v) for v in df[c].tolist()] for c in feature_cols}
    events = []
    for i, entity_id in enumerate(ids):
        e: dict[str, Any] = {
            "entity_type": entity_type,
            "entity_id": entity_id,
            "event_time": ms[i],
            "features": {c: columns[c][i] for c in feature_cols},
        }
        if event_ids is not None and event_ids[i] is not None:
            e["event_id"] = str(event_ids[i])
        events.append(e)
    return events
