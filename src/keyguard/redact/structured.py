"""Redaction of structured data: a new object of the same shape, input untouched."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from keyguard.secret import Secret

if TYPE_CHECKING:
    from keyguard.redact.redactor import Redactor

__all__ = ["redact_obj"]


def redact_obj(redactor: Redactor, obj: Any, *, _memo: dict[int, Any] | None = None) -> Any:
    """Walk dicts (keys and values), lists, tuples (incl. named), sets, frozensets, str,
    bytes, dataclasses and pydantic models; other objects are returned as they are."""
    memo = {} if _memo is None else _memo
    oid = id(obj)
    if oid in memo:  # shared or cyclic references keep their shape
        return memo[oid]

    def walk(x: Any) -> Any:
        return redact_obj(redactor, x, _memo=memo)

    if isinstance(obj, str):
        return redactor.redact(obj)
    if isinstance(obj, bytes | bytearray):
        out = redactor.redact_bytes(bytes(obj))
        return bytearray(out) if isinstance(obj, bytearray) else out
    if isinstance(obj, Secret):
        return str(obj)
    if obj is None or isinstance(obj, bool | int | float | complex):
        return obj
    if isinstance(obj, dict):
        new: dict[Any, Any] = obj.__class__() if type(obj) is not dict else {}
        memo[oid] = new
        for k, v in obj.items():
            new[walk(k)] = walk(v)
        return new
    if isinstance(obj, list):
        new_list: list[Any] = []
        memo[oid] = new_list
        new_list.extend(walk(v) for v in obj)
        return new_list if type(obj) is list else obj.__class__(new_list)
    if isinstance(obj, tuple):
        items = [walk(v) for v in obj]
        if hasattr(obj, "_fields"):  # namedtuple
            return obj.__class__(*items)
        return tuple(items) if type(obj) is tuple else obj.__class__(items)
    if isinstance(obj, set | frozenset):
        return obj.__class__(walk(v) for v in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        changes = {
            f.name: walk(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if f.init and hasattr(obj, f.name)
        }
        new_dc = dataclasses.replace(obj, **changes)
        memo[oid] = new_dc
        return new_dc
    model_copy = getattr(obj, "model_copy", None)
    fields = getattr(type(obj), "model_fields", None)
    if callable(model_copy) and isinstance(fields, dict):  # pydantic v2 model
        update = {name: walk(getattr(obj, name)) for name in fields if hasattr(obj, name)}
        extra = getattr(obj, "__pydantic_extra__", None) or {}
        update.update({k: walk(v) for k, v in extra.items()})
        new_model = model_copy(update=update, deep=False)
        memo[oid] = new_model
        return new_model
    return obj
