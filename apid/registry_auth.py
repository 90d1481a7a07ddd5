"""POST /auth: check registry credentials the way `docker login` expects.

Owns the login probe dockerd does (registry/auth.go loginV2): `GET /v2/` on the
registry; on a `Basic` challenge retry with the credentials; on a `Bearer`
challenge ask the realm for a token with them. Success -> 200 "Login
Succeeded"; refused credentials -> 401 in Docker's words. Loopback and
private registries are tried over HTTPS first and then plain HTTP (dockerd's
insecure-registry default for 127.0.0.0/8).
"""

from __future__ import annotations

import re

import httpx

from dockyard import errdefs

__all__ = ["login", "Unauthorized"]


class Unauthorized(errdefs.PermissionDenied):
    """The registry refused the credentials (HTTP 401 to the client)."""


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.partition(" ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return scheme.lower(), params


def _insecure_ok(host: str) -> bool:
    name = host.rsplit(":", 1)[0].strip("[]")
    return name in ("localhost", "::1") or name.startswith("127.")


async def login(auth: dict[str, str]) -> str:
    """Check `auth` ({username, password, serveraddress}); returns the identity token ("").

    Raises:
        Unauthorized: wrong credentials. Unavailable: registry unreachable.
    """
    server = (auth.get("serveraddress") or "https://index.docker.io/v1/").strip()
    host = re.sub(r"^https?://", "", server).split("/")[0]
    if host in ("index.docker.io", "docker.io"):
        host = "registry-1.docker.io"
    user, password = auth.get("username") or "", auth.get("password") or ""
    schemes = ["https", "http"] if _insecure_ok(host) else ["https"]
    last: Exception | None = None
    for scheme in schemes:
        try:
            async with httpx.AsyncClient(timeout=15, verify=scheme == "https") as client:
                r = await client.get(f"{scheme}://{host}/v2/")
                if r.status_code == 200:
                    return ""
                if r.status_code != 401:
                    raise errdefs.Unavailable(f"login attempt to {scheme}://{host}/v2/ failed "
                                              f"with status: {r.status_code}")
                kind, params = _challenge(r.headers.get("www-authenticate", ""))
                if kind == "basic":
                    r = await client.get(f"{scheme}://{host}/v2/", auth=(user, password))
                    if r.status_code == 200:
                        return ""
                elif kind == "bearer" and params.get("realm"):
                    q = {"service": params.get("service", ""), "account": user,
                         "client_id": "dockyard"}
                    r = await client.get(params["realm"], params=q, auth=(user, password))
                    if r.status_code == 200:
                        return ""
                raise Unauthorized(f"login attempt to {scheme}://{host}/v2/ failed with status: "
                                   "401 Unauthorized")
        except httpx.HTTPError as err:
            last = err
    raise errdefs.Unavailable(f"Get \"https://{host}/v2/\": {last}")
