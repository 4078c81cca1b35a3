"""Python client of the featstore online feature store.

* :class:`Client` — every call of the HTTP API a Python program needs: single-entity
  reads, ranking reads decoded into numpy arrays (:class:`RankAnswer`, with
  ``to_pandas``/``to_arrow``), pushes from dicts or DataFrames, registry listings.
* :mod:`featstore_client.errors` — one exception class per class of error answer.

The wire format is docs/wire.md of the featstore repository.
"""

from ._binary import NO_TIME, Cell, Column, RankAnswer, decode_rank
from ._client import Client, FeatureVector, PushResult, Reading
from .errors import (
    BadRequest,
    Conflict,
    ConnectionFailed,
    DecodeError,
    FeatstoreError,
    Gone,
    InternalError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    PushRejected,
    Refused,
    ServerError,
    Unavailable,
)

__all__ = [
    "NO_TIME",
    "BadRequest",
    "Cell",
    "Client",
    "Column",
    "Conflict",
    "ConnectionFailed",
    "DecodeError",
    "FeatstoreError",
    "FeatureVector",
    "Gone",
    "InternalError",
    "MethodNotAllowed",
    "NotFound",
    "PayloadTooLarge",
    "PushRejected",
    "PushResult",
    "RankAnswer",
    "Reading",
    "Refused",
    "ServerError",
    "Unavailable",
    "decode_rank",
]
__version__ = "0.1.0"
