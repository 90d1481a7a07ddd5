"""List/subscribe filters, containerd's syntax: ``labels."a.b"==x,image~=^busy``.

A filter is comma-separated conditions that must all hold; a request's list of
filters matches when ANY filter matches (no filters match everything). A
condition is ``<fieldpath>`` (present and non-empty), ``<fieldpath>==<value>``,
``!=`` or ``~=`` (Python regular expression, searched). Field paths are
dot-separated; quote a segment holding dots: ``labels."com.example.x"``.
Values may be quoted ("a,b") to hold commas. Each store says which fields it
knows; an unknown field simply never matches.

Owns parsing and matching only; it must not know any object's shape.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dockyard.errdefs import InvalidArgument

__all__ = ["Filter", "parse", "match_any", "Getter", "mapping_getter"]

Getter = Callable[[list[str]], str | None]  # fieldpath -> value, None when absent


@dataclass(frozen=True)
class Condition:
    path: tuple[str, ...]
    op: str  # "" (present), "==", "!=", "~="
    value: str = ""
    regex: re.Pattern | None = None

    def match(self, get: Getter) -> bool:
        value = get(list(self.path))
        if self.op == "":
            return bool(value)
        if self.op == "!=":
            return value != self.value
        if value is None:
            return False
        if self.op == "==":
            return value == self.value
        return self.regex.search(value) is not None  # ~=


@dataclass(frozen=True)
class Filter:
    conditions: tuple[Condition, ...]

    def match(self, get: Getter) -> bool:
        return all(c.match(get) for c in self.conditions)


def parse(text: str) -> Filter:
    """Parse one filter string; raises InvalidArgument naming the position of an error."""
    pos, conds = 0, []
    n = len(text)

    def fail(msg: str) -> InvalidArgument:
        return InvalidArgument(f"filter {text!r}: {msg} at position {pos}")

    def quoted() -> str:
        nonlocal pos
        quote = text[pos]
        pos += 1
        out = []
        while pos < n and text[pos] != quote:
            if text[pos] == "\\" and pos + 1 < n:
                pos += 1
            out.append(text[pos])
            pos += 1
        if pos >= n:
            raise fail("unterminated quote")
        pos += 1
        return "".join(out)

    while True:
        while pos < n and text[pos] == " ":
            pos += 1
        path = []
        while True:
            if pos < n and text[pos] in "\"'":
                path.append(quoted())
            else:
                m = re.compile(r"[A-Za-z0-9_\-/]+").match(text, pos)
                if not m:
                    raise fail("expected a field name")
                path.append(m.group())
                pos = m.end()
            if pos < n and text[pos] == ".":
                pos += 1
                continue
            break
        while pos < n and text[pos] == " ":
            pos += 1
        op = text[pos:pos + 2] if text[pos:pos + 2] in ("==", "!=", "~=") else ""
        value, regex = "", None
        if op:
            pos += 2
            while pos < n and text[pos] == " ":
                pos += 1
            if pos < n and text[pos] in "\"'":
                value = quoted()
            else:
                end = text.find(",", pos)
                end = n if end < 0 else end
                value = text[pos:end].rstrip()
                pos = end
            if op == "~=":
                try:
                    regex = re.compile(value)
                except re.error as err:
                    raise fail(f"bad regular expression {value!r} ({err})") from None
        conds.append(Condition(tuple(path), op, value, regex))
        while pos < n and text[pos] == " ":
            pos += 1
        if pos >= n:
            break
        if text[pos] != ",":
            raise fail("expected ',' or an operator (==, !=, ~=)")
        pos += 1
    return Filter(tuple(conds))


def compile_all(filters: Sequence[str]) -> list[Filter]:
    return [parse(f) for f in filters if f.strip()]


def match_any(filters: Sequence[Filter], get: Getter) -> bool:
    return not filters or any(f.match(get) for f in filters)


def mapping_getter(fields: dict[str, str], maps: dict[str, dict[str, str]] | None = None) -> Getter:
    """A Getter over plain fields ({"id": ...}) and maps ({"labels": {...}})."""
    maps = maps or {}

    def get(path: list[str]) -> str | None:
        if len(path) == 1:
            return fields.get(path[0])
        if path[0] in maps:
            return maps[path[0]].get(".".join(path[1:]))
        return fields.get(".".join(path))

    return get
