"""A real registry on loopback for tests: Debian's docker-registry (distribution 2.8).

Three modes, each a fresh registry with its own storage dir and port:

- ``anonymous``: anyone may pull and push.
- ``basic``: htpasswd (bcrypt) users; pull and push need ``Authorization: Basic``.
- ``token``: the registry trusts a Bearer token server run by this module in
  the test process (a thread with http.server), which issues RS256 JWTs signed
  with a throw-away key whose self-signed certificate is the registry's
  ``rootcertbundle``. Basic credentials at the token endpoint are checked;
  anonymous token requests get pull access only (``anonymous_pull=True``).

Use in tests (fixtures are session-scoped; each xdist worker gets its own)::

    from helpers.registry import registry  # noqa: F401  (the fixture)

    def test_x(registry):
        registry.host   # "127.0.0.1:41234"  -> pull "127.0.0.1:41234/busybox:latest"
        registry.url    # "http://127.0.0.1:41234"

or start one yourself: ``with start_registry(tmp_path, mode="basic") as reg: ...``.
``helpers.images`` builds images and pushes them here with plain HTTP calls.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

__all__ = ["Registry", "TokenServer", "Proxy", "start_registry", "free_port",
           "registry", "registry_basic", "registry_token", "USERNAME", "PASSWORD"]

REGISTRY_BIN = "/usr/bin/docker-registry"
USERNAME = "dockyard"
PASSWORD = "s3cret-pass"
SERVICE = "dockyard-test-registry"
ISSUER = "dockyard-test-issuer"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """A Bearer token server (distribution's token auth spec) on 127.0.0.1.

    Records every token request in `requests` as (scopes, username or None).
    """

    def __init__(self, workdir: Path, users: dict[str, str], anonymous_pull: bool = True):
        self.workdir = workdir
        self.users = users
        self.anonymous_pull = anonymous_pull
        self.requests: list[tuple[list[str], str | None]] = []
        self.key = workdir / "token.key"
        self.cert = workdir / "token.crt"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(self.key),
             "-out", str(self.cert), "-days", "2", "-subj", "/CN=dockyard-test-token",
             "-addext", "keyUsage=digitalSignature"],
            check=True, capture_output=True)
        der = subprocess.run(["openssl", "x509", "-in", str(self.cert), "-outform", "DER"],
                             check=True, capture_output=True).stdout
        self._x5c = base64.b64encode(der).decode()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):  # noqa: N802 (http.server's naming)
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                user = server._check_basic(self.headers.get("Authorization"))
                if user is False:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="token"')
                    self.end_headers()
                    return
                scopes = query.get("scope", [])
                server.requests.append((scopes, user))
                body = json.dumps(server.issue(query.get("service", [""])[0], scopes, user))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.realm = f"http://127.0.0.1:{self.port}/token"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def _check_basic(self, header: str | None) -> str | None | bool:
        """None for anonymous, the user name when valid, False when wrong."""
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        user, _, password = base64.b64decode(value).decode().partition(":")
        return user if self.users.get(user) == password else False

    def issue(self, service: str, scopes: list[str], user: str | None) -> dict:
        """A signed token granting what the scopes ask, limited by who asks."""
        access = []
        for scope in scopes:
            for one in scope.split(" "):
                kind, _, rest = one.partition(":")
                name, _, actions = rest.rpartition(":")
                wanted = [a for a in actions.split(",") if a]
                allowed = wanted if user else [a for a in wanted
                                               if a == "pull" and self.anonymous_pull]
                access.append({"type": kind, "name": name, "actions": allowed})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}
        claims = {"iss": ISSUER, "sub": user or "", "aud": service, "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": uuid.uuid4().hex, "access": access}
        signing_input = f"{_b64url(json.dumps(header).encode())}." \
                        f"{_b64url(json.dumps(claims).encode())}"
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)],
                             input=signing_input.encode(), check=True,
                             capture_output=True).stdout
        token = f"{signing_input}.{_b64url(sig)}"
        return {"token": token, "access_token": token, "expires_in": 300,
                "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))}

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Proxy:
    """A plain-HTTP proxy in front of a registry that can misbehave on blob downloads.

    ``cut_after``: send only this many body bytes of blob GETs longer than that (``cuts`` times),
    then drop the connection; ``delay``: seconds to sleep per 64 KiB of blob body
    (a slow link); ``redirect_blobs``: answer blob GETs with a 307 to the registry
    itself (another origin, as a CDN would be). Records (method, path, Range header)
    in ``requests``.
    Use ``proxy.host`` in references instead of the registry's.
    """

    def __init__(self, upstream: str, cut_after: int | None = None, cuts: int = 1,
                 delay: float = 0.0, redirect_blobs: bool = False):
        self.upstream, self.cut_after, self.cuts, self.delay = upstream, cut_after, cuts, delay
        self.redirect_blobs = redirect_blobs
        self.requests: list[tuple[str, str, str | None]] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                proxy.requests.append((self.command, self.path, self.headers.get("Range")))
                if proxy.redirect_blobs and self.command == "GET" and "/blobs/sha256:" in self.path:
                    # like a registry sending blob downloads to a CDN (another origin)
                    self.send_response(307)
                    self.send_header("Location", proxy.upstream + self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "connection", "content-length")}
                with httpx.Client(timeout=60) as c:
                    with c.stream(self.command, proxy.upstream + self.path, headers=headers,
                                  content=body) as resp:
                        self.send_response(resp.status_code)
                        for k, v in resp.headers.multi_items():
                            if k.lower() not in ("connection", "transfer-encoding",
                                                 "content-encoding"):
                                self.send_header(k, v)
                        self.end_headers()
                        if self.command == "HEAD":
                            return
                        is_blob = "/blobs/sha256:" in self.path and self.command == "GET"
                        cut = None
                        if is_blob and proxy.cut_after is not None and proxy.cuts > 0:
                            cut = proxy.cut_after
                        sent = 0
                        for chunk in resp.iter_raw(65536):
                            if cut is not None and sent + len(chunk) > cut:
                                proxy.cuts -= 1
                                self.wfile.write(chunk[:cut - sent])
                                self.wfile.flush()
                                self.close_connection = True
                                self.connection.shutdown(socket.SHUT_RDWR)
                                return
                            self.wfile.write(chunk)
                            sent += len(chunk)
                            if is_blob and proxy.delay:
                                time.sleep(proxy.delay)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _forward  # noqa: N815

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def blob_gets(self, digest: str) -> list[str | None]:
        """The Range headers of every GET of that blob so far."""
        return [r for m, p, r in self.requests if m == "GET" and p.endswith(f"/blobs/{digest}")]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class Registry:
    """A running docker-registry. `auth` is (user, password) for basic/token modes."""

    host: str
    root: Path
    mode: str
    proc: subprocess.Popen
    auth: tuple[str, str] | None = None
    token_server: TokenServer | None = None
    log: Path | None = None
    extra: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def storage(self) -> Path:
        """distribution's filesystem driver root: docker/registry/v2/{blobs,repositories}."""
        return self.root / "storage" / "docker" / "registry" / "v2"

    def blob_path(self, digest: str) -> Path:
        """Where the registry keeps a blob's bytes (tests corrupt them here)."""
        algo, hexpart = digest.split(":", 1)
        return self.storage / "blobs" / algo / hexpart[:2] / hexpart / "data"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.token_server:
            self.token_server.close()


def _htpasswd(user: str, password: str) -> str:
    return subprocess.run(["htpasswd", "-Bbn", user, password], check=True,
                          capture_output=True, text=True).stdout.strip() + "\n"


@contextlib.contextmanager
def start_registry(workdir: str | os.PathLike, mode: str = "anonymous",
                   username: str = USERNAME, password: str = PASSWORD,
                   anonymous_pull: bool = True) -> Iterator[Registry]:
    """Run a docker-registry in workdir (created) until the with-block ends.

    Args:
        workdir: holds config.yml, storage/, the log and auth files.
        mode: "anonymous", "basic" (htpasswd) or "token" (Bearer, token server here).
        username, password: the one account for basic and token modes.
        anonymous_pull: token mode: grant pull to anonymous token requests.
    """
    if not os.path.exists(REGISTRY_BIN):
        pytest.skip("Debian's docker-registry is not installed")
    root = Path(workdir)
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    auth_cfg = ""
    token_server = None
    if mode == "basic":
        (root / "htpasswd").write_text(_htpasswd(username, password))
        auth_cfg = f"auth:\n  htpasswd:\n    realm: dockyard-test\n    path: {root / 'htpasswd'}\n"
    elif mode == "token":
        token_server = TokenServer(root, {username: password}, anonymous_pull)
        auth_cfg = (f"auth:\n  token:\n    realm: {token_server.realm}\n"
                    f"    service: {SERVICE}\n    issuer: {ISSUER}\n"
                    f"    rootcertbundle: {token_server.cert}\n")
    elif mode != "anonymous":
        raise ValueError(f"unknown registry mode {mode!r}")
    (root / "config.yml").write_text(
        "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'storage'}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n" + auth_cfg)
    log = root / "registry.log"
    with open(log, "wb") as logf:
        # setpriv --pdeathsig: the registry dies with the test process even when
        # that one crashes before its teardown
        wrapper = ["setpriv", "--pdeathsig", "KILL"] if shutil.which("setpriv") else []
        proc = subprocess.Popen([*wrapper, REGISTRY_BIN, "serve", str(root / "config.yml")],
                                stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
    reg = Registry(f"127.0.0.1:{port}", root, mode, proc,
                   None if mode == "anonymous" else (username, password), token_server, log)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                httpx.get(f"{reg.url}/v2/", timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"docker-registry did not start: {log.read_text()}") from None
                time.sleep(0.05)
        yield reg
    finally:
        reg.stop()
        shutil.rmtree(root / "storage", ignore_errors=True)


@pytest.fixture(scope="session")
def registry(tmp_path_factory) -> Iterator[Registry]:
    """An anonymous registry for the whole session (per xdist worker)."""
    with start_registry(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


@pytest.fixture(scope="session")
def registry_basic(tmp_path_factory) -> Iterator[Registry]:
    """A registry with htpasswd basic auth; credentials in `.auth`."""
    with start_registry(tmp_path_factory.mktemp("registry-basic"), mode="basic") as reg:
        yield reg


@pytest.fixture(scope="session")
def registry_token(tmp_path_factory) -> Iterator[Registry]:
    """A registry behind a Bearer token server; credentials in `.auth`."""
    with start_registry(tmp_path_factory.mktemp("registry-token"), mode="token") as reg:
        yield reg
