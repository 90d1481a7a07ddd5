"""Image references: parse and normalise them as Docker does.

Grammar and rules follow distribution/reference (`reference.go`,
`normalize.go`): `name[:tag][@digest]`, a domain is the part before the first
`/` only when it looks like a host (`localhost`, a `.` or `:`, or uppercase
letters), Docker Hub names get `docker.io/` and single-component ones
`library/`, and a reference without tag or digest means `:latest`.

Pure: no I/O. Every invalid input raises InvalidArgument with a message that
says what is wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dockyard.errdefs import InvalidArgument

__all__ = [
    "DEFAULT_DOMAIN",
    "LEGACY_DOMAIN",
    "OFFICIAL_PREFIX",
    "Reference",
    "parse",
    "parse_digest",
    "is_image_id",
]

DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAIN = "index.docker.io"
OFFICIAL_PREFIX = "library/"
MAX_NAME = 255

_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
# host: DNS labels joined by dots, or an IPv6 literal in brackets; optional :port
_HOST = re.compile(
    r"^(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
    r"(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*"
    r"|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$")
_HEX64 = re.compile(r"^[a-f0-9]{64}$")
_DIGEST_HEX = {"sha256": 64, "sha384": 96, "sha512": 128}


def is_image_id(text: str) -> bool:
    """True for a bare 64-hex string, which Docker reads as an image ID, not a name."""
    return bool(_HEX64.match(text))


def parse_digest(text: str) -> str:
    """Validate `algorithm:hex` and return it.

    Raises:
        InvalidArgument: the digest is malformed or its algorithm is unknown.
    """
    if not _DIGEST.match(text):
        raise InvalidArgument(f"invalid digest {text!r}: want algorithm:hex, e.g. sha256:<64 hex>")
    algo, hexpart = text.split(":", 1)
    want = _DIGEST_HEX.get(algo)
    if want is None:
        raise InvalidArgument(f"invalid digest {text!r}: unsupported algorithm {algo!r}")
    if len(hexpart) != want or hexpart != hexpart.lower():
        raise InvalidArgument(f"invalid digest {text!r}: {algo} needs {want} lowercase hex digits")
    return text


@dataclass(frozen=True)
class Reference:
    """A normalised reference: domain, path, and tag and/or digest.

    `tag` is None only when a digest is given; `str()` gives the canonical
    form (`docker.io/library/redis:latest`), `familiar()` what Docker prints
    (`redis:latest`).
    """

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """`domain/path`, e.g. `docker.io/library/redis`."""
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        out = self.name
        if self.tag is not None:
            out += f":{self.tag}"
        if self.digest is not None:
            out += f"@{self.digest}"
        return out

    @property
    def object(self) -> str:
        """What to ask the registry's manifest endpoint for: the digest if any, else the tag."""
        return self.digest or self.tag or "latest"

    def familiar_name(self) -> str:
        """The name as Docker shows it: `redis`, `user/app`, `127.0.0.1:5000/busybox`."""
        if self.domain == DEFAULT_DOMAIN:
            path = self.path
            if path.startswith(OFFICIAL_PREFIX) and path.count("/") == 1:
                path = path[len(OFFICIAL_PREFIX):]
            return path
        return self.name

    def familiar(self) -> str:
        """The whole reference as Docker shows it: `redis:latest`, `busybox@sha256:…`."""
        out = self.familiar_name()
        if self.tag is not None:
            out += f":{self.tag}"
        if self.digest is not None:
            out += f"@{self.digest}"
        return out

    def with_tag(self, tag: str) -> Reference:
        """The same repository with another tag (and no digest)."""
        if not _TAG.match(tag):
            raise InvalidArgument(f"invalid tag {tag!r}: use up to 128 of [A-Za-z0-9_.-], "
                                  "not starting with '.' or '-'")
        return Reference(self.domain, self.path, tag, None)

    def with_digest(self, digest: str) -> Reference:
        """The same repository pinned to a digest (`repo@sha256:…`, no tag): a RepoDigest."""
        return Reference(self.domain, self.path, None, parse_digest(digest))


def _split_domain(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if sep and (first == "localhost" or "." in first or ":" in first or first != first.lower()):
        domain, path = first, rest
    else:
        domain, path = DEFAULT_DOMAIN, name
    if domain == LEGACY_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_PREFIX + path
    return domain, path


def parse(text: str, *, default_tag: str | None = "latest") -> Reference:
    """Parse and normalise a reference as `docker pull` does.

    Args:
        text: `redis`, `user/app:1`, `localhost:5000/a/b@sha256:…`, `x:1@sha256:…`.
        default_tag: the tag to add when neither tag nor digest is given; None keeps
            the reference bare (tag None), which `docker pull --all-tags` and image
            listing filters need.

    Returns:
        The normalised Reference.

    Raises:
        InvalidArgument: the reference is empty, has uppercase letters in the
            repository, a bad component, tag or digest, or a name over 255 characters.
    """
    if not text:
        raise InvalidArgument("invalid reference format: empty reference")
    if text != text.strip() or any(c.isspace() for c in text):
        raise InvalidArgument(f"invalid reference format {text!r}: contains whitespace")
    rest, digest = text, None
    if "@" in rest:
        rest, _, digest = rest.partition("@")
        parse_digest(digest)
    tag = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1:]
        if not _TAG.match(tag):
            raise InvalidArgument(f"invalid reference format {text!r}: invalid tag {tag!r} "
                                  "(up to 128 of [A-Za-z0-9_.-], not starting with '.' or '-')")
    if not rest:
        raise InvalidArgument(f"invalid reference format {text!r}: missing repository name")
    if len(rest) > MAX_NAME:
        raise InvalidArgument(f"invalid reference format {text!r}: repository name must not "
                              f"be longer than {MAX_NAME} characters")
    domain, path = _split_domain(rest)
    if domain != DEFAULT_DOMAIN and not _HOST.match(domain):
        raise InvalidArgument(f"invalid reference format {text!r}: invalid registry host {domain!r}")
    for comp in path.split("/"):
        if not _COMPONENT.match(comp):
            if comp.lower() != comp and _COMPONENT.match(comp.lower()):
                raise InvalidArgument(f"invalid reference format {text!r}: repository name "
                                      "must be lowercase")
            raise InvalidArgument(
                f"invalid reference format {text!r}: invalid path component {comp!r} "
                "(lowercase letters and digits separated by '.', '_', '__' or '-')")
    if len(f"{domain}/{path}") > MAX_NAME and domain != DEFAULT_DOMAIN:
        raise InvalidArgument(f"invalid reference format {text!r}: repository name must not "
                              f"be longer than {MAX_NAME} characters")
    if tag is None and digest is None and default_tag is not None:
        tag = default_tag
    return Reference(domain, path, tag, digest)
