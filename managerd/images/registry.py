"""A registry client for the OCI distribution API on httpx (sync, thread-safe).

Owns the HTTP conversation with registries: choosing http or https (plain
HTTP only for loopback hosts and registries configured insecure), the 401
challenge dance (anonymous, Basic, Bearer with a token cache and per-request
scopes), manifests by tag or digest with the Accept list distribution needs,
blob downloads (redirects followed; Authorization dropped for other hosts by
httpx; resume from an offset with Range), and the push endpoints (HEAD,
cross-repository mount, upload sessions, manifest PUT). It verifies manifest
bytes fetched by digest; blob verification belongs to the caller, which
streams the bytes into the content store (pull.py).

Errors: NotFound (MANIFEST_UNKNOWN, NAME_UNKNOWN, BLOB_UNKNOWN),
PermissionDenied (401/403 after authenticating), InvalidArgument (a digest
mismatch), Unavailable (network errors, 5xx, 429, not a v2 registry).
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx

from dockyard.errdefs import (
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)

from . import mediatypes
from .auth import Challenge, Credentials, TokenCache, load_docker_config, parse_challenges
from .reference import DEFAULT_DOMAIN

__all__ = ["RegistryOptions", "Client", "Endpoint", "Manifest", "is_loopback"]

log = logging.getLogger(__name__)

DOCKER_HUB = "https://registry-1.docker.io"
CHUNK = 1 << 20


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1 (with or without a port)."""
    if host.startswith("["):
        name = host[1:host.index("]")]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass
class RegistryOptions:
    """How to reach registries; every field is a managerd flag.

    insecure: hosts (`host:port`, or CIDRs like `10.0.0.0/8`) where plain HTTP
        is allowed (loopback always is).
    config_path: a Docker config.json whose `auths` supply credentials (None:
        ~/.docker/config.json; "" for none).
    """

    insecure: tuple[str, ...] = ()
    config_path: str | None = ""
    timeout: float = 60.0
    retries: int = 3
    max_concurrent_downloads: int = 3

    def allows_http(self, host: str) -> bool:
        if is_loopback(host) or host in self.insecure:
            return True
        name = host.rsplit(":", 1)[0].strip("[]")
        for entry in self.insecure:
            if "/" in entry:
                try:
                    if ipaddress.ip_address(name) in ipaddress.ip_network(entry, strict=False):
                        return True
                except ValueError:
                    continue
        return False


@dataclass(frozen=True)
class Manifest:
    """Manifest bytes exactly as received (re-serialising would change the digest)."""

    media_type: str
    digest: str
    data: bytes


def _error_message(resp: httpx.Response) -> tuple[str, str]:
    """(first error code, readable message) from a registry error body."""
    try:
        errors = resp.json().get("errors") or []
    except (ValueError, AttributeError):
        errors = []
    if errors:
        first = errors[0]
        return first.get("code", ""), "; ".join(
            f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in errors)
    return "", f"HTTP {resp.status_code}"


def _raise_for(resp: httpx.Response, what: str) -> None:
    if resp.status_code < 400:
        return
    if resp.is_stream_consumed is False:
        resp.read()
    code, msg = _error_message(resp)
    if resp.status_code == 404 or code in ("MANIFEST_UNKNOWN", "NAME_UNKNOWN", "BLOB_UNKNOWN"):
        raise NotFound(f"{what}: not found: {msg}")
    if resp.status_code in (401, 403):
        raise PermissionDenied(f"{what}: denied: {msg}")
    if resp.status_code in (400, 405, 416):
        raise InvalidArgument(f"{what}: {msg}")
    raise Unavailable(f"{what}: {msg}")


class Client:
    """Registry endpoints by host, sharing one connection pool and token cache."""

    def __init__(self, options: RegistryOptions | None = None,
                 credentials: dict[str, Credentials] | None = None):
        self.options = options or RegistryOptions()
        self._creds = dict(credentials or {})
        if self.options.config_path != "":
            self._creds = {**load_docker_config(self.options.config_path), **self._creds}
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=16)
        self.http = httpx.Client(timeout=httpx.Timeout(self.options.timeout, connect=10),
                                 limits=limits, follow_redirects=True)
        self.tokens = TokenCache(self.http)
        self._endpoints: dict[tuple[str, Credentials | None], Endpoint] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self.http.close()

    def endpoint(self, domain: str, credentials: Credentials | None = None) -> Endpoint:
        """The endpoint for a reference's domain; credentials override config.json."""
        key = (domain, credentials)
        with self._lock:
            ep = self._endpoints.get(key)
            if ep is None:
                creds = credentials if credentials else self._creds.get(domain, Credentials())
                ep = Endpoint(self, domain, creds)
                self._endpoints[key] = ep
            return ep


@dataclass
class Endpoint:
    """One registry host as seen with one set of credentials."""

    client: Client
    domain: str
    creds: Credentials
    _base: str | None = None
    _challenge: Challenge | None = None
    _headers: dict[tuple[str, ...], str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- connection and auth -------------------------------------------------------------

    @property
    def base(self) -> str:
        """`https://host` or, where allowed and needed, `http://host`."""
        if self._base is None:
            self._probe()
        assert self._base is not None
        return self._base

    def _probe(self) -> None:
        if self.domain == DEFAULT_DOMAIN:
            self._base = DOCKER_HUB
            return
        candidates = [f"https://{self.domain}"]
        if self.client.options.allows_http(self.domain):
            # loopback/insecure: prefer TLS when the registry has it, as dockerd does
            candidates.append(f"http://{self.domain}")
        last: Exception | None = None
        for base in candidates:
            try:
                resp = self.client.http.get(f"{base}/v2/", timeout=10)
            except httpx.HTTPError as err:
                last = err
                continue
            self._base = base
            self._note_challenge(resp)
            if resp.status_code == 404:
                raise Unavailable(f"registry {self.domain} does not speak the v2 API (GET /v2/ "
                                  "answered 404)")
            return
        hint = "" if self.client.options.allows_http(self.domain) else \
            " (plain HTTP is only used for loopback and --insecure-registry hosts)"
        raise Unavailable(f"ping registry {self.domain}: {last}{hint}")

    def ping(self) -> None:
        """GET /v2/, authenticating if the registry asks.

        Raises:
            Unavailable: unreachable or not a v2 registry. PermissionDenied: bad credentials.
        """
        with self.request("GET", "/v2/", scopes=()) as resp:
            _raise_for(resp, f"ping registry {self.domain}")

    def _note_challenge(self, resp: httpx.Response) -> None:
        if resp.status_code == 401 and "www-authenticate" in resp.headers:
            challenges = parse_challenges(resp.headers["www-authenticate"])
            bearer = [c for c in challenges if c.scheme == "bearer"]
            basic = [c for c in challenges if c.scheme == "basic"]
            chosen = (bearer or basic or [None])[0]
            if chosen is not None:
                self._challenge = chosen

    def _authorization(self, scopes: tuple[str, ...], fresh: bool = False) -> str | None:
        ch = self._challenge
        if ch is None:
            return None
        if ch.scheme == "basic":
            return self.creds.basic_header() if self.creds.username else None
        if ch.scheme != "bearer":
            return None
        with self._lock:
            if not fresh and scopes in self._headers:
                return self._headers[scopes]
        # the challenge's own scope may name what the registry wants beyond ours
        wanted = list(scopes) or ([ch.params["scope"]] if ch.params.get("scope") else [])
        header = "Bearer " + self.client.tokens.get(ch, wanted, self.creds)
        with self._lock:
            self._headers[scopes] = header
        return header

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else self.base + path

    @contextmanager
    def request(self, method: str, path: str, *, scopes: Iterable[str],
                headers: dict[str, str] | None = None, content: bytes | None = None,
                retry: bool = True) -> Iterator[httpx.Response]:
        """Send one request (streamed response), authenticating on 401 once.

        Idempotent requests (retry=True) are retried on network errors, 5xx and 429.
        """
        scopes = tuple(scopes)
        attempts = self.client.options.retries if retry else 1
        authed_again = False
        attempt = 0
        while True:
            attempt += 1
            hdrs = dict(headers or {})
            auth = self._authorization(scopes)
            if auth:
                hdrs["Authorization"] = auth
            req = self.client.http.build_request(method, self.url(path), headers=hdrs,
                                                 content=content)
            try:
                resp = self.client.http.send(req, stream=True)
            except httpx.HTTPError as err:
                if attempt < attempts:
                    time.sleep(0.2 * attempt)
                    continue
                raise Unavailable(f"{method} {self.url(path)}: {err}") from err
            if resp.status_code == 401 and not authed_again:
                resp.read()
                resp.close()
                had = self._challenge
                self._note_challenge(resp)
                if self._challenge is None:
                    raise PermissionDenied(f"{method} {self.url(path)}: unauthorized")
                if self._challenge.scheme == "basic" and not self.creds.username:
                    raise PermissionDenied(f"{method} {self.url(path)}: the registry needs a "
                                           "login (no credentials for "
                                           f"{self.domain})")
                self._authorization(scopes, fresh=had is not None)
                authed_again = True
                attempt -= 1
                continue
            if (resp.status_code >= 500 or resp.status_code == 429) and attempt < attempts:
                resp.close()
                time.sleep(0.3 * attempt)
                continue
            try:
                yield resp
            finally:
                resp.close()
            return

    # --- pull ----------------------------------------------------------------------------

    def get_manifest(self, repo: str, ref: str) -> Manifest:
        """Fetch a manifest or index by tag or digest, verifying it when fetched by digest.

        Raises:
            NotFound: no such repository or tag. InvalidArgument: the bytes do not
            match the digest asked for, or a schema1 manifest.
        """
        what = f"manifest {self.domain}/{repo}:{ref}" if ":" not in ref else \
            f"manifest {self.domain}/{repo}@{ref}"
        with self.request("GET", f"/v2/{repo}/manifests/{ref}", scopes=(f"repository:{repo}:pull",),
                          headers={"Accept": mediatypes.ACCEPT}) as resp:
            _raise_for(resp, f"fetch {what}")
            data = resp.read()
            ctype = resp.headers.get("content-type", "").split(";")[0].strip()
            header_digest = resp.headers.get("docker-content-digest", "")
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if ref.startswith("sha256:") and digest != ref:
            raise InvalidArgument(f"fetch {what}: content digest {digest} does not match")
        if header_digest and header_digest.startswith("sha256:") and header_digest != digest:
            raise InvalidArgument(f"fetch {what}: registry says {header_digest} but the "
                                  f"bytes hash to {digest}")
        if ctype not in (*mediatypes.INDEXES, *mediatypes.MANIFESTS, *mediatypes.DOCKER_SCHEMA1):
            ctype = mediatypes.guess_manifest_type(data)
        if ctype in mediatypes.DOCKER_SCHEMA1:
            raise InvalidArgument(f"fetch {what}: schema1 manifests are not supported; push "
                                  "the image again with a current client")
        return Manifest(ctype, digest, data)

    @contextmanager
    def open_blob(self, repo: str, digest: str, offset: int = 0) -> Iterator[Iterator[bytes]]:
        """Stream a blob's bytes from offset (Range when offset > 0).

        A registry that ignores Range (200) has the skipped prefix dropped here,
        so callers always get bytes from offset on.
        """
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        with self.request("GET", f"/v2/{repo}/blobs/{digest}",
                          scopes=(f"repository:{repo}:pull",), headers=headers) as resp:
            _raise_for(resp, f"fetch blob {digest} of {self.domain}/{repo}")
            skip = offset if (offset and resp.status_code == 200) else 0

            def chunks() -> Iterator[bytes]:
                nonlocal skip
                for chunk in resp.iter_raw(CHUNK):
                    if skip:
                        if len(chunk) <= skip:
                            skip -= len(chunk)
                            continue
                        chunk, skip = chunk[skip:], 0
                    yield chunk
            yield chunks()

    def tags(self, repo: str) -> list[str]:
        """Every tag of a repository (follows `Link: rel="next"` paging)."""
        out: list[str] = []
        path: str | None = f"/v2/{repo}/tags/list"
        while path:
            with self.request("GET", path, scopes=(f"repository:{repo}:pull",)) as resp:
                _raise_for(resp, f"list tags of {self.domain}/{repo}")
                resp.read()
                out += resp.json().get("tags") or []
                link = resp.headers.get("link", "")
            path = None
            if 'rel="next"' in link:
                path = link.split(";")[0].strip("<> ")
        return out

    # --- push ----------------------------------------------------------------------------

    def _push_scopes(self, repo: str, *more: str) -> tuple[str, ...]:
        return (f"repository:{repo}:pull,push", *more)

    def blob_exists(self, repo: str, digest: str) -> bool:
        with self.request("HEAD", f"/v2/{repo}/blobs/{digest}",
                          scopes=self._push_scopes(repo)) as resp:
            if resp.status_code == 404:
                return False
            _raise_for(resp, f"check blob {digest} in {self.domain}/{repo}")
            return True

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> bool:
        """Cross-repository mount; True if mounted, False if the registry declined."""
        q = urllib.parse.urlencode({"mount": digest, "from": from_repo})
        with self.request("POST", f"/v2/{repo}/blobs/uploads/?{q}",
                          scopes=self._push_scopes(repo, f"repository:{from_repo}:pull"),
                          retry=False) as resp:
            if resp.status_code == 201:
                return True
            _raise_for(resp, f"mount blob {digest} from {from_repo} into {self.domain}/{repo}")
            # 202: an upload session we don't use; cancel it so the registry forgets it
            loc = resp.headers.get("location")
        if loc:
            with self.request("DELETE", loc, scopes=self._push_scopes(repo), retry=False):
                pass
        return False

    def upload_blob(self, repo: str, digest: str, size: int, chunks: Iterable[bytes],
                    on_bytes=None, chunk_size: int | None = None) -> None:
        """Upload a blob: POST a session, then one PUT (monolithic) or PATCHes and a PUT.

        Args:
            chunks: the blob's bytes in order.
            on_bytes: called with the number of bytes sent so far.
            chunk_size: PATCH in pieces of this size (chunked upload); None sends the
                whole blob in the final PUT.
        """
        scopes = self._push_scopes(repo)
        what = f"upload blob {digest} to {self.domain}/{repo}"
        with self.request("POST", f"/v2/{repo}/blobs/uploads/", scopes=scopes,
                          retry=False) as resp:
            _raise_for(resp, what)
            loc = resp.headers["location"]
        sent = 0

        def counted(it: Iterable[bytes]) -> Iterator[bytes]:
            nonlocal sent
            for c in it:
                sent += len(c)
                if on_bytes:
                    on_bytes(sent)
                yield c

        headers = {"Content-Type": "application/octet-stream"}
        if chunk_size:
            buf = bytearray()
            for c in counted(chunks):
                buf += c
                while len(buf) >= chunk_size:
                    loc = self._patch(loc, bytes(buf[:chunk_size]), sent - len(buf), scopes, what)
                    del buf[:chunk_size]
            if buf:
                loc = self._patch(loc, bytes(buf), sent - len(buf), scopes, what)
            body: bytes | Iterator[bytes] = b""
        else:
            body = counted(chunks)
        sep = "&" if "?" in loc else "?"
        url = f"{self.url(loc)}{sep}digest={urllib.parse.quote(digest)}"
        auth = self._authorization(scopes)
        if auth:
            headers["Authorization"] = auth
        if not chunk_size:
            headers["Content-Length"] = str(size)
        try:
            resp = self.client.http.put(url, content=body, headers=headers)
        except httpx.HTTPError as err:
            raise Unavailable(f"{what}: {err}") from err
        _raise_for(resp, what)

    def _patch(self, loc: str, data: bytes, start: int, scopes, what: str) -> str:
        headers = {"Content-Type": "application/octet-stream",
                   "Content-Range": f"{start}-{start + len(data) - 1}"}
        auth = self._authorization(scopes)
        if auth:
            headers["Authorization"] = auth
        try:
            resp = self.client.http.patch(self.url(loc), content=data, headers=headers)
        except httpx.HTTPError as err:
            raise Unavailable(f"{what}: {err}") from err
        _raise_for(resp, what)
        return resp.headers.get("location", loc)

    def put_manifest(self, repo: str, ref: str, media_type: str, data: bytes) -> str:
        """PUT a manifest under a tag or digest; returns its digest."""
        with self.request("PUT", f"/v2/{repo}/manifests/{ref}", scopes=self._push_scopes(repo),
                          headers={"Content-Type": media_type}, content=data,
                          retry=False) as resp:
            _raise_for(resp, f"push manifest {self.domain}/{repo}:{ref}")
            return resp.headers.get("docker-content-digest") or \
                "sha256:" + hashlib.sha256(data).hexdigest()


