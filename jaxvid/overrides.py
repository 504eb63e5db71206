"""``key=value`` overrides of an ``ml_collections.ConfigDict`` (``--set`` / ``--config.key=value``).

Values are parsed as Python literals (``0.7``, ``True``, ``None``, ``(8, 8)``, ``'text'``);
anything that is not a literal is taken as a string, so ``--set negative_prompt=blurry`` works
without quotes. A key the config does not have, or a value of the wrong type for its field,
is an error that names the valid keys: a typo must never be silently ignored.
"""

from __future__ import annotations

import ast
from typing import Iterable

import ml_collections


def _parse(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def flat_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    """Every leaf key of ``config`` in dotted form."""
    keys = []
    for k, v in config.items():
        if isinstance(v, ml_collections.ConfigDict):
            keys += flat_keys(v, f"{prefix}{k}.")
        else:
            keys.append(prefix + k)
    return keys


def apply_overrides(config: ml_collections.ConfigDict, items: Iterable[str]) -> ml_collections.ConfigDict:
    """Apply ``["a.b=1", "c=text", ...]`` to ``config`` in place (and return it)."""
    valid = flat_keys(config)
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"override {item!r} must look like key=value")
        if key not in valid:
            raise ValueError(f"unknown config key {key!r}; valid keys: {', '.join(sorted(valid))}")
        *parents, leaf = key.split(".")
        node = config
        for p in parents:
            node = node[p]
        value = _parse(raw)
        old = node[leaf]
        if isinstance(old, tuple) and isinstance(value, list):
            value = tuple(value)
        if old is not None and isinstance(old, str) and not isinstance(value, str):
            value = raw  # a string field keeps the text as written ("--set negative_prompt=1990s")
        try:
            node[leaf] = value
        except TypeError as e:
            raise ValueError(f"bad value for {key}: {raw!r} ({e})") from None
    return config


def load_config(spec: str) -> ml_collections.ConfigDict:
    """``path/to/config.py[:arg]`` -> that file's ``get_config(arg)`` (as ml_collections'
    ``config_flags`` reads config files)."""
    import importlib.util
    from pathlib import Path

    path, _, arg = spec.partition(":")
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    module_spec = importlib.util.spec_from_file_location(f"_jaxvid_config_{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"{path} defines no get_config(arg)")
    return module.get_config(arg or None)
