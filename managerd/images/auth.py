"""Registry credentials and authentication: Docker's config.json, challenges, tokens.

Owns: reading `auths` from a Docker config.json (base64 `auth` or
username/password, identitytoken), parsing `WWW-Authenticate` challenges,
fetching Bearer tokens from a token server (distribution's token spec, GET
with optional Basic credentials, OAuth2 POST when only a refresh token is
known) and caching them per (realm, service, scopes) until they expire.
Must not talk to the registry itself: registry.py does, and asks here for
the Authorization header.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
import time
from dataclasses import dataclass

import httpx

from dockyard.errdefs import InvalidArgument, PermissionDenied, Unavailable

__all__ = ["Credentials", "Challenge", "parse_challenges", "load_docker_config",
           "decode_registry_auth", "TokenCache", "DOCKER_HUB_KEYS"]

# config.json keys Docker uses for Docker Hub
DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io",
                   "registry-1.docker.io", "https://registry-1.docker.io")


@dataclass(frozen=True)
class Credentials:
    username: str = ""
    password: str = ""
    identity_token: str = ""  # OAuth2 refresh token (docker login with an identity provider)
    registry_token: str = ""  # a bearer token to use as is

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def __bool__(self) -> bool:
        return bool(self.username or self.identity_token or self.registry_token)


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lowercase: "basic" or "bearer"
    params: dict[str, str]


_PARAM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


def parse_challenges(header: str) -> list[Challenge]:
    """Parse a WWW-Authenticate value: `Bearer realm="…",service="…",scope="…"`.

    Several challenges may follow each other (`Basic realm="x", Bearer realm="y"`).
    """
    out: list[Challenge] = []
    rest = header.strip()
    while rest:
        m = re.match(r"([A-Za-z][A-Za-z0-9-]*)\s*", rest)
        if not m:
            break
        scheme = m.group(1).lower()
        rest = rest[m.end():]
        params: dict[str, str] = {}
        while True:
            pm = _PARAM.match(rest)
            if not pm:
                break
            value = pm.group(2) if pm.group(2) is not None else pm.group(3)
            params[pm.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
            rest = rest[pm.end():]
        out.append(Challenge(scheme, params))
        rest = rest.lstrip(", ")
    return out


def _host_key(key: str) -> str:
    """`https://host:5000/v1/` -> `host:5000`; Docker Hub's aliases -> `docker.io`."""
    if key in DOCKER_HUB_KEYS:
        return "docker.io"
    key = re.sub(r"^[a-z]+://", "", key)
    return key.split("/", 1)[0]


def load_docker_config(path: str | os.PathLike | None = None) -> dict[str, Credentials]:
    """Credentials by registry host from a Docker config.json `auths` section.

    Args:
        path: the config file; default $DOCKER_CONFIG/config.json or ~/.docker/config.json.
            A missing file means no credentials.

    Raises:
        InvalidArgument: the file is not JSON or an `auth` entry is not base64 `user:pass`.
    """
    if path is None:
        base = os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker")
        path = os.path.join(base, "config.json")
    try:
        with open(path, "rb") as f:
            doc = json.load(f)
    except FileNotFoundError:
        return {}
    except ValueError as err:
        raise InvalidArgument(f"read registry credentials from {path}: {err}") from err
    out: dict[str, Credentials] = {}
    for key, entry in (doc.get("auths") or {}).items():
        user, password = entry.get("username", ""), entry.get("password", "")
        if entry.get("auth"):
            try:
                user, sep, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except ValueError as err:
                raise InvalidArgument(f"read registry credentials from {path}: "
                                      f"`auth` of {key!r} is not base64: {err}") from err
            if not sep:
                raise InvalidArgument(f"read registry credentials from {path}: "
                                      f"`auth` of {key!r} is not user:password")
        out[_host_key(key)] = Credentials(user, password, entry.get("identitytoken", ""),
                                          entry.get("registrytoken", ""))
    return out


def decode_registry_auth(value: str) -> Credentials:
    """The Engine API's X-Registry-Auth: base64url JSON {username,password,identitytoken,...}."""
    if not value:
        return Credentials()
    try:
        padded = value + "=" * (-len(value) % 4)
        doc = json.loads(base64.urlsafe_b64decode(padded))
    except ValueError as err:
        raise InvalidArgument(f"invalid registry auth: {err}") from err
    return Credentials(doc.get("username", "") or "", doc.get("password", "") or "",
                       doc.get("identitytoken", "") or "", doc.get("registrytoken", "") or "")


@dataclass
class _Token:
    value: str
    expires: float


class TokenCache:
    """Bearer tokens by (realm, service, scopes), fetched once per expiry, thread-safe."""

    def __init__(self, client: httpx.Client):
        self._client = client
        self._tokens: dict[tuple, _Token] = {}
        self._lock = threading.Lock()

    def get(self, challenge: Challenge, scopes: list[str], creds: Credentials) -> str:
        """A token for the scopes; fetched from the challenge's realm when not cached.

        Raises:
            PermissionDenied: the token server refused the credentials.
            Unavailable: the token server cannot be reached or answered nonsense.
        """
        if creds.registry_token:
            return creds.registry_token
        realm = challenge.params.get("realm")
        if not realm:
            raise Unavailable("registry asked for a bearer token without a realm")
        service = challenge.params.get("service", "")
        key = (realm, service, tuple(sorted(scopes)), creds.username)
        with self._lock:
            tok = self._tokens.get(key)
            if tok and tok.expires > time.monotonic():
                return tok.value
        value, lifetime = self._fetch(realm, service, scopes, creds)
        with self._lock:
            # renew a little early so a request never starts with a token about to expire
            self._tokens[key] = _Token(value, time.monotonic() + max(lifetime - 10, 5))
        return value

    def _fetch(self, realm: str, service: str, scopes: list[str],
               creds: Credentials) -> tuple[str, float]:
        try:
            if creds.identity_token:
                resp = self._client.post(realm, data={
                    "grant_type": "refresh_token", "refresh_token": creds.identity_token,
                    "service": service, "scope": " ".join(scopes), "client_id": "dockyard"})
            else:
                params = [("service", service)] if service else []
                params += [("scope", s) for s in scopes]
                headers = {"Authorization": creds.basic_header()} if creds.username else {}
                resp = self._client.get(realm, params=params, headers=headers)
        except httpx.HTTPError as err:
            raise Unavailable(f"fetch token from {realm}: {err}") from err
        if resp.status_code in (401, 403):
            raise PermissionDenied(f"fetch token from {realm}: {resp.status_code} "
                                   "unauthorized: incorrect username or password")
        if resp.status_code != 200:
            raise Unavailable(f"fetch token from {realm}: HTTP {resp.status_code}")
        try:
            doc = resp.json()
        except ValueError as err:
            raise Unavailable(f"fetch token from {realm}: response is not JSON") from err
        value = doc.get("token") or doc.get("access_token")
        if not value:
            raise Unavailable(f"fetch token from {realm}: response has no token")
        return value, float(doc.get("expires_in") or 60)
