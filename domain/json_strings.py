"""Finding strings in parsed JSON: where ingestion and the API look for text no database can store."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def first_string(value: Any, test: Callable[[str], bool], path: str = "") -> str | None:
    """The dotted path (keys and list indexes; ``body`` for the value itself) of the first string in
    ``value``, a key or a value, for which ``test`` holds; None when there is none."""
    if isinstance(value, str):
        return (path or "body") if test(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            inner = f"{path}.{key}" if path else str(key)
            if test(str(key)):
                return inner
            found = first_string(item, test, inner)
            if found:
                return found
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = first_string(item, test, f"{path}.{i}" if path else str(i))
            if found:
                return found
    return None
