"""The CLI's HTTP client for the Docker Engine API that dockyard-apid serves.

Owns: talking HTTP/1.1 to apid (request encoding, response framing, hijacked
attach/exec connections) and turning transport failures into errors a person
can act on. Must not: print, parse command lines or know any command's output.

Every `dockyard` command pays this module's imports, so the hot path is a few
dozen lines of HTTP/1.1 over an AF_UNIX socket (stdlib `socket` only, ~10 ms)
instead of httpx (~170 ms to import on these machines, see DESIGN.md). The
transport is an object with `open()` and `hijack()`; tests pass
`HttpxTransport(httpx.MockTransport(handler))` to drive commands without a
daemon, or a real socket server for the hijacked streams.
"""

from __future__ import annotations

import json as _json
import os
import socket
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import Any

__all__ = [
    "DEFAULT_HOST",
    "APIError",
    "DaemonUnreachable",
    "Client",
    "Response",
    "Hijacked",
    "UnixTransport",
    "HttpxTransport",
    "q",
]

DEFAULT_HOST = "unix:///run/dockyard/dockyard.sock"
USER_AGENT = "dockyard-cli/0.1.0 (linux)"
_CHUNK = 65536


class APIError(Exception):
    """The daemon answered with an error status; `message` is its {"message"} text."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class DaemonUnreachable(Exception):
    """The socket is missing, refuses connections or may not be opened by this user."""

    def __init__(self, host: str, reason: str, permission: bool = False):
        super().__init__(reason)
        self.host = host
        self.reason = reason
        self.permission = permission


_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


def _pct(text: str) -> str:
    # urllib.parse costs ~5 ms to import; percent-encoding is this much code
    return "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in text.encode("utf-8"))


def q(part: str) -> str:
    """Quote one path segment (a container name or image reference) for a URL."""
    return _pct(part)


def _encode_params(params: dict[str, Any] | None) -> str:
    if not params:
        return ""
    items: list[tuple[str, str]] = []
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "1" if value else "0"
        elif isinstance(value, dict):
            value = _json.dumps(value, separators=(",", ":"))
        if isinstance(value, list | tuple):
            items += [(key, str(v)) for v in value]
        else:
            items.append((key, str(value)))
    return "?" + "&".join(f"{_pct(k)}={_pct(v)}" for k, v in items) if items else ""


class Response:
    """Status, lower-cased headers, and a body that is read lazily (streams stay open)."""

    def __init__(self, status: int, reason: str, headers: dict[str, str],
                 body: Iterator[bytes], close: Any = None):
        self.status = status
        self.reason = reason
        self.headers = headers
        self._body = body
        self._close = close

    def iter_bytes(self) -> Iterator[bytes]:
        """The body as it arrives, chunk by chunk."""
        try:
            yield from self._body
        finally:
            self.close()

    def read(self) -> bytes:
        return b"".join(self.iter_bytes())

    def json(self) -> Any:
        data = self.read()
        return _json.loads(data) if data.strip() else None

    def iter_lines(self) -> Iterator[bytes]:
        """Lines of a newline-delimited stream (pull progress, events, stats), without EOLs."""
        pending = b""
        for chunk in self.iter_bytes():
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line.strip():
                    yield line.rstrip(b"\r")
        if pending.strip():
            yield pending

    def iter_json(self) -> Iterator[Any]:
        """One decoded JSON value per line of the stream."""
        for line in self.iter_lines():
            yield _json.loads(line)

    def close(self) -> None:
        if self._close is not None:
            close, self._close = self._close, None
            close()


class Hijacked:
    """A raw duplex connection after `101 UPGRADED` (attach, exec start).

    Bytes the server sent right behind its headers were already buffered while
    reading them: `recv` hands those out first.
    """

    def __init__(self, sock: socket.socket, buffered: bytes = b"",
                 headers: dict[str, str] | None = None):
        self.sock = sock
        self._buffered = buffered
        self.headers = headers or {}

    def recv(self, size: int = _CHUNK) -> bytes:
        if self._buffered:
            data, self._buffered = self._buffered[:size], self._buffered[size:]
            return data
        return self.sock.recv(size)

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close_write(self) -> None:
        """Half-close: tells the daemon stdin ended while output keeps flowing."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def fileno(self) -> int:
        return self.sock.fileno()


class Pending(Protocol):
    """A request that was sent; its response head is read on demand."""

    def response(self) -> Response: ...


class Transport(Protocol):
    def open(self, method: str, target: str, headers: dict[str, str],
             body: bytes | Iterable[bytes] | None) -> Pending: ...

    def hijack(self, method: str, target: str, headers: dict[str, str],
               body: bytes | None) -> tuple[Response, Hijacked | None]: ...


# --- HTTP/1.1 over a unix socket -------------------------------------------------------------


class _Reader:
    """Buffered reads from a socket: lines for the head, exact sizes for bodies."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""

    def _fill(self) -> bool:
        data = self.sock.recv(_CHUNK)
        self.buf += data
        return bool(data)

    def readline(self) -> bytes:
        while b"\n" not in self.buf:
            if not self._fill():
                line, self.buf = self.buf, b""
                return line
        line, self.buf = self.buf.split(b"\n", 1)
        return line + b"\n"

    def read_exact(self, size: int) -> Iterator[bytes]:
        while size > 0:
            if not self.buf and not self._fill():
                raise ConnectionError("connection closed before the end of the response body")
            data, self.buf = self.buf[:size], self.buf[size:]
            size -= len(data)
            yield data

    def read_to_close(self) -> Iterator[bytes]:
        if self.buf:
            data, self.buf = self.buf, b""
            yield data
        while True:
            data = self.sock.recv(_CHUNK)
            if not data:
                return
            yield data

    def read_chunked(self) -> Iterator[bytes]:
        while True:
            line = self.readline()
            if not line:
                raise ConnectionError("connection closed inside a chunked response")
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.readline().strip():  # trailers
                    pass
                return
            yield b"".join(self.read_exact(size))
            self.readline()  # CRLF after the chunk


def _read_head(reader: _Reader) -> tuple[int, str, dict[str, str]]:
    while True:
        line = reader.readline()
        if not line:
            raise ConnectionError("the daemon closed the connection without answering")
        parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise ConnectionError(f"malformed status line from the daemon: {line[:80]!r}")
        status = int(parts[1])
        headers: dict[str, str] = {}
        while True:
            h = reader.readline().decode("latin-1").rstrip("\r\n")
            if not h:
                break
            name, _, value = h.partition(":")
            headers[name.strip().lower()] = value.strip()
        if 100 <= status < 200 and status != 101:
            continue  # 100 Continue and friends precede the real answer
        return status, parts[2] if len(parts) > 2 else "", headers


class _UnixPending:
    def __init__(self, sock: socket.socket, method: str):
        self.sock = sock
        self.method = method

    def response(self) -> Response:
        reader = _Reader(self.sock)
        status, reason, headers = _read_head(reader)
        if self.method == "HEAD" or status in (204, 304) or status < 200:
            body: Iterator[bytes] = iter(())
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = reader.read_chunked()
        elif "content-length" in headers:
            body = reader.read_exact(int(headers["content-length"]))
        else:
            body = reader.read_to_close()
        return Response(status, reason, headers, body, close=self.sock.close)


class UnixTransport:
    """HTTP/1.1 on a unix socket; one connection per request (`Connection: close`).

    Per-request connections cost one connect(2) on a local socket, keep framing
    trivial for long streams, and let run's attach, wait and start proceed in
    parallel the way the docker CLI's separate connections do.
    """

    def __init__(self, path: str, host: str, timeout: float | None = None):
        self.path = path
        self.host = host
        self.timeout = timeout

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.path)
        except PermissionError as err:
            sock.close()
            raise DaemonUnreachable(self.host, err.strerror or str(err), permission=True) from err
        except (FileNotFoundError, ConnectionRefusedError) as err:
            sock.close()
            raise DaemonUnreachable(self.host, err.strerror or str(err)) from err
        except OSError as err:
            sock.close()
            raise DaemonUnreachable(self.host, err.strerror or str(err)) from err
        sock.settimeout(self.timeout)
        return sock

    def _send(self, sock: socket.socket, method: str, target: str, headers: dict[str, str],
              body: bytes | Iterable[bytes] | None) -> None:
        head = [f"{method} {target} HTTP/1.1", "Host: dockyard", f"User-Agent: {USER_AGENT}"]
        chunked = body is not None and not isinstance(body, bytes | bytearray)
        if isinstance(body, bytes | bytearray):
            head.append(f"Content-Length: {len(body)}")
        elif chunked:
            head.append("Transfer-Encoding: chunked")
        elif method in ("POST", "PUT"):
            head.append("Content-Length: 0")
        head += [f"{k}: {v}" for k, v in headers.items()]
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        if isinstance(body, bytes | bytearray):
            sock.sendall(data + body)
        elif chunked:
            sock.sendall(data)
            for piece in body:  # type: ignore[union-attr]
                if piece:
                    sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            sock.sendall(b"0\r\n\r\n")
        else:
            sock.sendall(data)

    def open(self, method: str, target: str, headers: dict[str, str],
             body: bytes | Iterable[bytes] | None) -> _UnixPending:
        sock = self._connect()
        try:
            self._send(sock, method, target, {**headers, "Connection": "close"}, body)
        except BrokenPipeError:
            pass  # the daemon answered early (an error); its response is still readable
        except BaseException:
            sock.close()
            raise
        return _UnixPending(sock, method)

    def hijack(self, method: str, target: str, headers: dict[str, str],
               body: bytes | None) -> tuple[Response, Hijacked | None]:
        sock = self._connect()
        try:
            self._send(sock, method, target,
                       {**headers, "Connection": "Upgrade", "Upgrade": "tcp"}, body)
            reader = _Reader(sock)
            status, reason, hdrs = _read_head(reader)
        except BaseException:
            sock.close()
            raise
        if status in (101, 200) and "content-length" not in hdrs \
                and "chunked" not in hdrs.get("transfer-encoding", ""):
            sock.settimeout(None)
            return Response(status, reason, hdrs, iter(())), Hijacked(sock, reader.buf, hdrs)
        # An ordinary answer (an error, or `exec start -d`): hand back its body.
        if "chunked" in hdrs.get("transfer-encoding", "").lower():
            b: Iterator[bytes] = reader.read_chunked()
        elif "content-length" in hdrs:
            b = reader.read_exact(int(hdrs["content-length"]))
        else:
            b = reader.read_to_close()
        return Response(status, reason, hdrs, b, close=sock.close), None


class _Done:
    def __init__(self, response: Response):
        self._response = response

    def response(self) -> Response:
        return self._response


class HttpxTransport:
    """Adapts any httpx transport (tests: `httpx.MockTransport`) to this client.

    Hijacking needs a real socket, so it is answered with the handler's plain
    response and no connection: commands treat that like `exec start -d`.
    """

    def __init__(self, transport: Any):
        self.transport = transport

    def _do(self, method: str, target: str, headers: dict[str, str],
            body: bytes | Iterable[bytes] | None) -> Response:
        import httpx

        if body is not None and not isinstance(body, bytes | bytearray):
            body = b"".join(body)
        request = httpx.Request(method, "http://dockyard" + target, headers=headers,
                                content=body)
        resp = self.transport.handle_request(request)
        resp.read()
        hdrs = {k.lower(): v for k, v in resp.headers.items()}
        return Response(resp.status_code, resp.reason_phrase, hdrs, iter([resp.content]))

    def open(self, method: str, target: str, headers: dict[str, str],
             body: bytes | Iterable[bytes] | None) -> _Done:
        return _Done(self._do(method, target, headers, body))

    def hijack(self, method: str, target: str, headers: dict[str, str],
               body: bytes | None) -> tuple[Response, Hijacked | None]:
        return self._do(method, target, {**headers, "Upgrade": "tcp"}, body), None


def transport_for(host: str) -> Transport:
    """The transport for a -H / DOCKYARD_HOST value (unix:// URLs or plain socket paths)."""
    if host.startswith("unix://"):
        return UnixTransport(host[len("unix://"):], host)
    if host.startswith("/"):
        return UnixTransport(host, "unix://" + host)
    raise ValueError(f"unsupported host {host!r}: use unix:///path/to/dockyard.sock")


def _error_message(resp: Response) -> str:
    data = resp.read()
    try:
        body = _json.loads(data)
        if isinstance(body, dict) and "message" in body:
            return str(body["message"])
        if isinstance(body, dict) and "detail" in body:  # FastAPI's own errors
            return str(body["detail"])
    except ValueError:
        pass
    text = data.decode("utf-8", "replace").strip()
    return text or f"{resp.status} {resp.reason}".strip()


class Client:
    """Docker Engine API calls; raises APIError for >= 400 and DaemonUnreachable.

    `extra_headers` go on every request (the trace's `traceparent`).
    """

    def __init__(self, host: str | None = None, transport: Transport | None = None):
        self.host = host or os.environ.get("DOCKYARD_HOST") or DEFAULT_HOST
        self.transport = transport if transport is not None else transport_for(self.host)
        self.extra_headers: dict[str, str] = {}

    def _target(self, path: str, params: dict[str, Any] | None) -> str:
        return path + _encode_params(params)

    def _headers(self, headers: dict[str, str] | None, json_body: bool) -> dict[str, str]:
        out = dict(self.extra_headers)
        if json_body:
            out["Content-Type"] = "application/json"
        if headers:
            out.update(headers)
        return out

    def open(self, method: str, path: str, *, params: dict[str, Any] | None = None,
             json: Any = None, data: bytes | Iterable[bytes] | None = None,
             headers: dict[str, str] | None = None) -> Pending:
        """Send a request without waiting for its answer (run's wait before start)."""
        body = _json.dumps(json).encode() if json is not None else data
        return self.transport.open(method, self._target(path, params),
                                   self._headers(headers, json is not None), body)

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                json: Any = None, data: bytes | Iterable[bytes] | None = None,
                headers: dict[str, str] | None = None) -> Response:
        """Send a request; return the response (body unread) or raise APIError."""
        resp = self.open(method, path, params=params, json=json, data=data,
                         headers=headers).response()
        return check(resp)

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw).json()

    def post(self, path: str, **kw: Any) -> Any:
        return self.request("POST", path, **kw).json()

    def delete(self, path: str, **kw: Any) -> Any:
        return self.request("DELETE", path, **kw).json()

    def hijack(self, path: str, *, params: dict[str, Any] | None = None,
               json: Any = None) -> Hijacked | None:
        """POST with Upgrade: tcp; the raw connection, or None if the daemon did not hijack."""
        body = _json.dumps(json).encode() if json is not None else None
        headers = self._headers(None, json is not None)
        if json is None:
            headers["Content-Type"] = "text/plain"
        resp, conn = self.transport.hijack("POST", self._target(path, params), headers, body)
        if conn is None:
            check(resp)
            resp.read()
        return conn


def check(resp: Response) -> Response:
    """Raise APIError for an error status (reading its message), else return resp."""
    if resp.status >= 400:
        raise APIError(resp.status, _error_message(resp))
    return resp
