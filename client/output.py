"""How the CLI shows things: aligned tables, `--format` templates, JSON, human units.

Owns: the Go-template subset the docker CLI's `--format` accepts (`{{.ID}}`,
`{{.State.Status}}`, `{{json .}}`, `{{range}}`/`{{if}}`, `table` prefix,
`join`/`upper`/`index`/...), docker's tabwriter layout (min width 10, padding 3)
and docker's human sizes and durations. Must not: talk to the daemon.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TextIO

__all__ = [
    "Row",
    "TemplateError",
    "Template",
    "render_rows",
    "tabulate",
    "human_size",
    "bytes_size",
    "human_duration",
    "ellipsis",
    "go_value",
]


class TemplateError(ValueError):
    """A --format template that cannot be parsed or executed."""


# --- units --------------------------------------------------------------------------------------


def _g4(value: float) -> str:
    # Go's %.4g: no trailing zeros, no exponent for the magnitudes we print
    text = f"{value:.4g}"
    if "e" in text:
        text = f"{value:.0f}"
    return text


def human_size(size: float, precision: int = 4) -> str:
    """Decimal units as docker's `units.HumanSizeWithPrecision` ("3.147MB", "36.45kB")."""
    units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"]
    i = 0
    while size >= 1000 and i < len(units) - 1:
        size /= 1000.0
        i += 1
    text = f"{size:.{precision}g}"
    if "e" in text:
        text = f"{size:.0f}"
    return text + units[i]


def bytes_size(size: float) -> str:
    """Binary units as docker's `units.BytesSize` ("1.5MiB"), used by stats."""
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
    i = 0
    while size >= 1024 and i < len(units) - 1:
        size /= 1024.0
        i += 1
    return _g4(size) + units[i]


def human_duration(seconds: float) -> str:
    """docker's `units.HumanDuration`: "3 seconds", "About a minute", "2 hours"."""
    if seconds < 1:
        return "Less than a second"
    s = int(seconds)
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


def since(unix_seconds: float, now: float | None = None) -> str:
    """"5 minutes ago" for a unix timestamp."""
    now = time.time() if now is None else now
    return human_duration(max(0.0, now - unix_seconds)) + " ago"


def ellipsis(text: str, width: int) -> str:
    """Cut text to width characters, the last one an ellipsis (docker's `formatter.Ellipsis`)."""
    if len(text) <= width:
        return text
    if width <= 1:
        return text[:width]
    return text[: width - 1] + "…"


def parse_time(value: str | int | float | None) -> float | None:
    """RFC 3339 (nanoseconds allowed) or unix seconds -> unix seconds; None when never."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return float(value)
    if value.startswith("0001-01-01"):
        return None
    from datetime import datetime

    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$", value)
    if not m:
        return None
    frac = float(m.group(2) or 0)
    tz = m.group(3) or "Z"
    stamp = datetime.fromisoformat(m.group(1) + ("+00:00" if tz == "Z" else tz))
    return stamp.timestamp() + frac


# --- Go values ----------------------------------------------------------------------------------


def go_value(value: Any) -> str:
    """Print a value as Go's fmt %v prints the decoded JSON docker's templates see."""
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    if isinstance(value, list | tuple):
        return "[" + " ".join(go_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_value(v)}" for k, v in sorted(value.items())) + "]"
    return str(value)


def _truthy(value: Any) -> bool:
    return bool(value) and value != "<no value>"


def _json_func(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _index(value: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(value, dict):
            value = value.get(key)
        elif isinstance(value, list | tuple):
            try:
                value = value[int(key)]
            except (IndexError, ValueError) as err:
                raise TemplateError(f"index {key!r} out of range") from err
        else:
            raise TemplateError(f"can't index item of type {type(value).__name__}")
    return value


def _join(items: Any, sep: str) -> str:
    if not isinstance(items, list | tuple):
        raise TemplateError("join expects a list")
    return sep.join(go_value(i) for i in items)


def _printf(fmt: str, *args: Any) -> str:
    out = []
    i = 0
    args_iter = iter(args)
    while i < len(fmt):
        c = fmt[i]
        if c == "%" and i + 1 < len(fmt):
            verb = fmt[i + 1]
            i += 2
            if verb == "%":
                out.append("%")
            elif verb == "q":
                out.append(json.dumps(go_value(next(args_iter, None))))
            else:
                out.append(go_value(next(args_iter, None)))
            continue
        out.append(c)
        i += 1
    return "".join(out)


FUNCS: dict[str, Callable[..., Any]] = {
    "json": _json_func,
    "upper": lambda s: go_value(s).upper(),
    "lower": lambda s: go_value(s).lower(),
    "title": lambda s: go_value(s).title(),
    "join": _join,
    "split": lambda s, sep: go_value(s).split(sep),
    "index": _index,
    "len": lambda v: len(v) if v is not None else 0,
    "print": lambda *a: "".join(go_value(v) for v in a),
    "println": lambda *a: " ".join(go_value(v) for v in a) + "\n",
    "printf": _printf,
    "truncate": lambda s, n: go_value(s)[: int(n)],
    "pad": lambda s, left, right: " " * int(left) + go_value(s) + " " * int(right),
    "not": lambda v: not _truthy(v),
    "and": lambda *a: next((v for v in a if not _truthy(v)), a[-1] if a else None),
    "or": lambda *a: next((v for v in a if _truthy(v)), a[-1] if a else None),
    "eq": lambda a, *b: any(a == x for x in b),
    "ne": lambda a, b: a != b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
}

# --- template parsing -------------------------------------------------------------------------

_ACTION_RE = r"\{\{(-\s)?(.*?)(\s-)?\}\}"
_TOKEN_RE = (r'\s*(?:("(?:[^"\\]|\\.)*")|(`[^`]*`)|(-?\d+(?:\.\d+)?)|(\|)|(\(|\))'
             r"|(\$?\.[\w.]*|\$)|([A-Za-z_]\w*))")
_compiled: dict[str, re.Pattern[str]] = {}


def _re(pattern: str) -> re.Pattern[str]:
    # compiled on first use: most commands print no template, and compiling costs start-up
    if pattern not in _compiled:
        _compiled[pattern] = re.compile(pattern, re.S)
    return _compiled[pattern]


class _Field:
    def __init__(self, path: str):
        self.path = [p for p in path.lstrip("$").split(".") if p]

    def eval(self, dot: Any) -> Any:
        value = dot
        if isinstance(dot, _HeaderDot) and self.path:
            return dot.get(self.path[-1])
        for name in self.path:
            if isinstance(value, dict) and name not in value and name[:1].isupper() and \
                    callable(getattr(type(value), name, None)):
                value = getattr(value, name)  # a method, e.g. ps's {{.Label "key"}}
            elif isinstance(value, dict):
                value = value.get(name)
            elif value is None:
                return None
            elif hasattr(value, name):
                value = getattr(value, name)
            else:
                raise TemplateError(f"can't evaluate field {name} in type "
                                    f"{type(value).__name__}")
        return value


class _Const:
    def __init__(self, value: Any):
        self.value = value

    def eval(self, dot: Any) -> Any:
        return self.value


class _Call:
    def __init__(self, name: str, args: list[Any]):
        if name not in FUNCS:
            raise TemplateError(f'function "{name}" not defined')
        self.name = name
        self.args = args

    def eval(self, dot: Any, piped: tuple = ()) -> Any:
        args = [a.eval(dot) for a in self.args] + list(piped)
        try:
            return FUNCS[self.name](*args)
        except TypeError as err:
            raise TemplateError(f"wrong arguments for {self.name}: {err}") from err


class _Pipeline:
    def __init__(self, text: str):
        self.commands: list[list[Any]] = [[]]
        pos = 0
        text = text.strip()
        stack: list[list[list[Any]]] = []
        while pos < len(text):
            m = _re(_TOKEN_RE).match(text, pos)
            if not m or m.end() == pos:
                raise TemplateError(f"unexpected {text[pos:]!r} in {{{{{text}}}}}")
            pos = m.end()
            s, raw, num, pipe, paren, field, ident = m.groups()
            cmd = self.commands[-1]
            if s is not None:
                cmd.append(_Const(json.loads(s)))
            elif raw is not None:
                cmd.append(_Const(raw[1:-1]))
            elif num is not None:
                cmd.append(_Const(float(num) if "." in num else int(num)))
            elif pipe:
                self.commands.append([])
            elif paren == "(":
                stack.append(self.commands)
                self.commands = [[]]
            elif paren == ")":
                if not stack:
                    raise TemplateError(f"unexpected ) in {{{{{text}}}}}")
                inner: Any = _Sub(self.commands)
                # `(index .Networks "n").IPAddress`: fields of the parenthesised value
                chain = _re(r"(?:\.[A-Za-z_]\w*)+").match(text, pos)
                if chain:
                    inner = _Chained(inner, _Field(chain.group(0)))
                    pos = chain.end()
                self.commands = stack.pop()
                self.commands[-1].append(inner)
            elif field is not None:
                cmd.append(_Field(field))
            elif ident in ("true", "false"):
                cmd.append(_Const(ident == "true"))
            elif ident == "nil":
                cmd.append(_Const(None))
            else:
                cmd.append(ident)
        if stack:
            raise TemplateError(f"unclosed ( in {{{{{text}}}}}")
        self.stages = [_stage(c, text) for c in self.commands]

    def eval(self, dot: Any) -> Any:
        value: Any = None
        for i, stage in enumerate(self.stages):
            if isinstance(stage, _Call):
                value = stage.eval(dot, (value,) if i else ())
            else:
                if i:
                    raise TemplateError("only a function can follow |")
                value = stage.eval(dot)
        return value


def _stage(cmd: list[Any], text: str) -> Any:
    if not cmd:
        raise TemplateError(f"missing value in {{{{{text}}}}}")
    head = cmd[0]
    if isinstance(head, str):
        return _Call(head, cmd[1:])
    if len(cmd) > 1:
        if isinstance(head, _Field):
            return _Method(head, cmd[1:])
        raise TemplateError(f"can't give arguments to a non-function in {{{{{text}}}}}")
    return head


class _Method:
    """`.Label "key"`: a field that is a method, called with arguments (Go templates)."""

    def __init__(self, field: _Field, args: list[Any]):
        self.field = field
        self.args = args

    def eval(self, dot: Any) -> Any:
        fn = self.field.eval(dot)
        if isinstance(dot, _HeaderDot):
            return fn
        if not callable(fn):
            raise TemplateError(f"{'.'.join(self.field.path)} is not a method: "
                                "it takes no arguments")
        return fn(*[a.eval(dot) for a in self.args])


class _Sub:
    def __init__(self, commands: list[list[Any]]):
        self.stages = [_stage(c, "(...)") for c in commands]

    def eval(self, dot: Any) -> Any:
        value: Any = None
        for i, stage in enumerate(self.stages):
            value = stage.eval(dot, (value,) if i else ()) if isinstance(stage, _Call) \
                else stage.eval(dot)
        return value


class _Chained:
    """A parenthesised pipeline followed by fields: `(index .X "k").Y.Z`."""

    def __init__(self, inner: _Sub, field: _Field):
        self.inner = inner
        self.field = field

    def eval(self, dot: Any) -> Any:
        value = self.inner.eval(dot)
        return None if value is None else self.field.eval(value)


class Template:
    """A parsed Go text/template subset; `render(obj)` returns the text."""

    def __init__(self, text: str):
        self.text = text
        self.nodes, end = self._parse(self._lex(text), 0, ())
        if end is not None:
            raise TemplateError(f"unexpected {{{{{end}}}}}")

    @staticmethod
    def _lex(text: str) -> list[tuple[str, str]]:
        tokens: list[tuple[str, str]] = []
        pos = 0
        for m in _re(_ACTION_RE).finditer(text):
            literal = text[pos:m.start()]
            if m.group(1):
                literal = literal.rstrip()
            tokens.append(("text", literal))
            tokens.append(("action", m.group(2).strip()))
            pos = m.end()
            if m.group(3):
                rest = text[pos:]
                pos += len(rest) - len(rest.lstrip())
        tokens.append(("text", text[pos:]))
        if "{{" in "".join(t for k, t in tokens if k == "text"):
            raise TemplateError(f"unclosed action in template {text!r}")
        return tokens

    def _parse(self, tokens: list[tuple[str, str]], i: int, stop: tuple[str, ...]):
        nodes: list[Any] = []
        self._i = i
        while self._i < len(tokens):
            kind, val = tokens[self._i]
            self._i += 1
            if kind == "text":
                if val:
                    nodes.append(("text", val))
                continue
            word = val.split(None, 1)[0] if val else ""
            if word in stop:
                return nodes, val
            if word in ("range", "if", "with"):
                pipe = _Pipeline(val[len(word):])
                body, end = self._parse(tokens, self._i, ("end", "else"))
                other: list[Any] = []
                if end is not None and end.startswith("else"):
                    rest = end[4:].strip()
                    if rest.startswith("if"):  # else if: nest
                        sub_pipe = _Pipeline(rest[2:])
                        sub_body, end2 = self._parse(tokens, self._i, ("end", "else"))
                        sub_other: list[Any] = []
                        if end2 is not None and end2.startswith("else"):
                            sub_other, end2 = self._parse(tokens, self._i, ("end",))
                        other = [("if", sub_pipe, sub_body, sub_other)]
                        end = end2
                    else:
                        other, end = self._parse(tokens, self._i, ("end",))
                if end != "end":
                    raise TemplateError(f"missing {{{{end}}}} for {{{{{val}}}}}")
                nodes.append((word, pipe, body, other))
                continue
            if word in ("end", "else"):
                raise TemplateError(f"unexpected {{{{{val}}}}}")
            if val.startswith("/*"):
                continue
            nodes.append(("action", _Pipeline(val)))
        return nodes, None

    def render(self, dot: Any) -> str:
        out: list[str] = []
        self._exec(self.nodes, dot, out)
        return "".join(out)

    def _exec(self, nodes: list[Any], dot: Any, out: list[str]) -> None:
        for node in nodes:
            kind = node[0]
            if kind == "text":
                out.append(node[1])
            elif kind == "action":
                value = node[1].eval(dot)
                out.append(value if isinstance(value, str) else go_value(value))
            elif kind == "if":
                value = node[1].eval(dot)
                self._exec(node[2] if _truthy(value) else node[3], dot, out)
            elif kind == "with":
                value = node[1].eval(dot)
                if _truthy(value):
                    self._exec(node[2], value, out)
                else:
                    self._exec(node[3], dot, out)
            elif kind == "range":
                value = node[1].eval(dot)
                items = list(value.values()) if isinstance(value, dict) else (value or [])
                if not items:
                    self._exec(node[3], dot, out)
                for item in items:
                    self._exec(node[2], item, out)


# --- tables -------------------------------------------------------------------------------------


def tabulate(lines: Iterable[str], minwidth: int = 10, padding: int = 3) -> str:
    """Align tab-separated cells like Go's tabwriter as docker configures it.

    A cell ended by a tab is padded to its column's width (widest cell + padding,
    at least minwidth); the last cell of a line is not padded.
    """
    rows = [line.split("\t") for line in lines]
    widths: dict[int, int] = {}
    for row in rows:
        for i, cell in enumerate(row[:-1]):
            widths[i] = max(widths.get(i, 0), len(cell) + padding, minwidth)
    out = []
    for row in rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        out.append("".join(cells) + row[-1])
    return "\n".join(out) + ("\n" if out else "")


def _unescape(fmt: str) -> str:
    return fmt.replace("\\t", "\t").replace("\\n", "\n")


def render_rows(rows: Sequence[dict[str, Any]], fmt: str | None, default: str,
                headers: dict[str, str], out: TextIO, quiet_field: str | None = None,
                quiet: bool = False) -> None:
    """Print rows through a docker-style format.

    Args:
        rows: one dict per object, keyed by the template field names (ID, Image...).
        fmt: the user's --format: None (the table), "table ...", "json", or a template.
        default: the default table template ("table {{.ID}}\\t{{.Image}}").
        headers: template field -> column header ("ID" -> "CONTAINER ID").
        out: where to write.
        quiet_field: the field -q prints, one per line.
        quiet: -q given.
    """
    if quiet and quiet_field:
        for row in rows:
            out.write(f"{row[quiet_field]}\n")
        return
    fmt = fmt or default
    if fmt.strip() == "table":  # docker: the default table, with its headers
        fmt = default
    if fmt == "json":
        for row in rows:
            out.write(_json_func(row) + "\n")
        return
    table = fmt.startswith("table")
    body = _unescape(fmt[5:].strip() if table else fmt)
    tmpl = Template(body)
    lines: list[str] = []
    if table:
        header_row = {k: v for k, v in headers.items()}
        try:
            lines.append(tmpl.render(_HeaderDot(header_row)))
        except TemplateError:
            lines.append("")
    for row in rows:
        lines.append(tmpl.render(row))
    if table:
        out.write(tabulate("\n".join(lines).split("\n")))
    else:
        for line in lines:
            out.write(line + "\n")


class Row(dict):
    """A table row whose template fields are its keys, plus docker's `.Label "key"`."""

    labels: dict[str, str] = {}

    def Label(self, key: str) -> str:  # noqa: N802 -- the template's name
        return str(self.labels.get(key, ""))


class _HeaderDot(dict):
    """Renders a table header: every field evaluates to its column title."""

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key) or re.sub(r"(?<=[a-z])(?=[A-Z])", " ", key).upper()
