"""Reading frozen architecture dataclasses from diffusers/transformers ``config.json`` dicts.

Keys that change the architecture in a way jaxvid does not implement are refused by name,
instead of being ignored and producing a silently different network.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping, TypeVar

T = TypeVar("T")


def config_from_dict(
    cls: type[T],
    d: Mapping[str, Any],
    *,
    required_defaults: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> T:
    """Build ``cls`` from the fields of ``d`` that it declares.

    ``required_defaults`` lists diffusers keys that must have the given value (or be absent):
    anything else means an architecture variant that is not ported, and raises.
    Lists become tuples so the dataclass stays hashable (it is static jit data).
    """
    for key, expected in (required_defaults or {}).items():
        if key in d and d[key] != expected and not (expected is None and d[key] in (None, [], False)):
            raise NotImplementedError(
                f"{cls.__name__}: config key {key}={d[key]!r} is not supported by jaxvid "
                f"(only {expected!r}); this architecture variant is not ported"
            )
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names}
    kwargs.update(overrides or {})
    return cls(**kwargs)


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"config file not found: {path}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"config file {path} is not valid JSON: {e}") from None


def config_to_dict(cfg: Any, class_name: str, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The dataclass as a diffusers-style config dict (lists, ``_class_name``)."""
    out: dict[str, Any] = {"_class_name": class_name}
    for f in dataclasses.fields(cfg):
        if f.metadata.get("jaxvid_only"):
            continue
        v = getattr(cfg, f.name)
        out[f.name] = list(v) if isinstance(v, tuple) else v
    out.update(extra or {})
    return out


def jaxvid_only(default: Any) -> Any:
    """A field that is a jaxvid runtime choice, not part of the diffusers config file."""
    return dataclasses.field(default=default, metadata={"jaxvid_only": True})
