"""JSON for the runtime's hot path, on the C accelerator alone.

`import json` pulls in `re` and `enum` (about 13 ms on the test machines),
more than half of the shim's whole start-up budget. The C module `_json`
that `json` wraps needs neither, so the shim parses config.json and writes
state.json through these two functions. Long-lived daemons should keep
using `json`.

Owns: `loads` and `dumps` with `json`'s semantics for the types OCI
documents use (dict, list, str, int, float, bool, None). It must not grow
options beyond what the shim needs.
"""

from __future__ import annotations

import _json

__all__ = ["loads", "dumps"]


def _constant(name: str) -> float:
    return {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}[name]


class _Context:
    # the attributes _json.make_scanner reads from json.JSONDecoder
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_constant)
    memo: dict = {}


_scan = _json.make_scanner(_Context())
_WS = " \t\n\r"


def loads(text: str | bytes) -> object:
    """Parse one JSON document; raises ValueError with the position on bad input."""
    if isinstance(text, bytes | bytearray):
        text = text.decode()
    start = len(text) - len(text.lstrip(_WS))
    try:
        obj, end = _scan(text, start)
    except (StopIteration, SystemError, ValueError):
        _explain(text)
        raise
    if text[end:].strip(_WS):
        raise ValueError(f"extra data at char {end}")
    return obj


def _explain(text: str) -> None:
    """Bad input (rare): let the full `json` module word the error. The bare
    C scanner cannot always build its JSONDecodeError without it."""
    import json

    json.loads(text)
    raise ValueError("invalid JSON")


def _default(obj: object) -> object:
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serializable")


_compact = _json.make_encoder(None, _default, _json.encode_basestring, None, ":", ",",
                              False, False, True)
_spaced = _json.make_encoder(None, _default, _json.encode_basestring, None, ": ", ", ",
                             False, False, True)


def dumps(obj: object, indent: int | None = None, compact: bool = True) -> str:
    """Serialise obj; `indent` pretty-prints as `json.dumps(obj, indent=n)` does."""
    if indent is None:
        return "".join((_compact if compact else _spaced)(obj, 0))
    out: list[str] = []
    _pretty(obj, " " * indent, "\n", out)
    return "".join(out)


def _pretty(obj: object, step: str, nl: str, out: list[str]) -> None:
    if isinstance(obj, dict) and obj:
        inner = nl + step
        out.append("{")
        first = True
        for key, value in obj.items():
            out.append(inner if first else "," + inner)
            first = False
            out.append(_json.encode_basestring(str(key)) + ": ")
            _pretty(value, step, inner, out)
        out.append(nl + "}")
    elif isinstance(obj, list | tuple) and obj:
        inner = nl + step
        out.append("[")
        for i, value in enumerate(obj):
            out.append(inner if i == 0 else "," + inner)
            _pretty(value, step, inner, out)
        out.append(nl + "]")
    else:
        out.append("".join(_compact(obj, 0)))
