"""Value encoding: JSON by default; dataclasses, pydantic models and enums
round-trip when the type is known. Pass any object with ``encode`` and
``decode`` as ``codec=`` to use another encoding."""

from __future__ import annotations

import dataclasses
import enum
import json
import types as _types
import typing
from typing import Any, Protocol, Union


class Codec(Protocol):
    """Turns values into bytes and back."""

    def encode(self, value: Any) -> bytes:
        """Encodes ``value``; raises ``TypeError``/``ValueError`` when it cannot."""
        ...

    def decode(self, data: bytes, type_hint: Any = None) -> Any:
        """Decodes ``data``, into ``type_hint`` when it is given."""
        ...


def _to_jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, enum.Enum):
        return _to_jsonable(value.value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump):  # pydantic v2 models
        return model_dump(mode="json")
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"dict keys must be str for JSON, got {type(k).__name__}")
            out[k] = _to_jsonable(v)
        return out
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    raise TypeError(f"a value of type {type(value).__name__} is not JSON-serialisable")


def _from_jsonable(obj: Any, hint: Any) -> Any:
    if hint is None or hint is Any or obj is None or type(obj) is hint:
        return obj
    origin = typing.get_origin(hint)
    if origin is Union or (hasattr(_types, "UnionType") and origin is _types.UnionType):
        for arg in typing.get_args(hint):
            if arg is type(None):
                continue
            try:
                return _from_jsonable(obj, arg)
            except (TypeError, ValueError):
                continue
        return obj
    if origin in (list, typing.List) and isinstance(obj, list):
        (item,) = typing.get_args(hint) or (None,)
        return [_from_jsonable(v, item) for v in obj]
    if origin in (tuple, typing.Tuple) and isinstance(obj, list):
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_jsonable(v, args[0]) for v in obj)
        return tuple(_from_jsonable(v, a) for v, a in zip(obj, args))
    if origin in (dict, typing.Dict) and isinstance(obj, dict):
        args = typing.get_args(hint)
        value_hint = args[1] if len(args) == 2 else None
        return {k: _from_jsonable(v, value_hint) for k, v in obj.items()}
    if isinstance(hint, type):
        if dataclasses.is_dataclass(hint) and isinstance(obj, dict):
            hints = typing.get_type_hints(hint)
            kwargs = {
                f.name: _from_jsonable(obj[f.name], hints.get(f.name))
                for f in dataclasses.fields(hint)
                if f.name in obj
            }
            return hint(**kwargs)
        model_validate = getattr(hint, "model_validate", None)
        if callable(model_validate):  # pydantic v2 models
            return model_validate(obj)
        if issubclass(hint, enum.Enum):
            return hint(obj)
        if hint is float and isinstance(obj, int):
            return float(obj)
    return obj


# One encoder for every call: `json.dumps` with any non-default argument
# builds a new encoder each time, which showed in per-checkpoint profiles.
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


class JsonCodec:
    """The default codec: compact UTF-8 JSON.

    Dataclasses and pydantic models are encoded as objects and rebuilt from
    the type hint (a workflow's annotations, or ``result_type=``).
    """

    def encode(self, value: Any) -> bytes:
        """Encodes ``value`` as JSON; raises ``TypeError`` when it cannot."""
        return _ENCODER.encode(_to_jsonable(value)).encode()

    def decode(self, data: bytes, type_hint: Any = None) -> Any:
        """Decodes JSON ``data`` (empty bytes are ``None``)."""
        if not data:
            return None
        return _from_jsonable(json.loads(data), type_hint)


__all__ = ["Codec", "JsonCodec"]
