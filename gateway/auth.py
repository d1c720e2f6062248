"""Bearer API keys, checked from the headers before any body byte is read."""

from __future__ import annotations

import hashlib
import hmac

from starlette.datastructures import Headers

from gateway.errors import Unauthorized

# No sha256 digest is empty, so the anonymous identity cannot collide with a key's.
ANONYMOUS = b""


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class APIKeys:
    """The accepted keys, held only as sha256 digests; no keys means authentication is off.

    Usage: `APIKeys(settings.api_keys).check(request.headers)`
    """

    def __init__(self, keys: tuple[str, ...]) -> None:
        self._digests = tuple(_digest(key) for key in keys)

    def check(self, headers: Headers) -> bytes:
        """Refuse a missing or unknown key; return the caller's identity for rate limits.

        The identity is the key's sha256 digest, never the key itself, or ANONYMOUS when
        authentication is off (every client then shares one budget).
        """
        if not self._digests:
            return ANONYMOUS
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("missing API key: send Authorization: Bearer <key>")
        # Equal-length digests compared in constant time leak neither key contents nor lengths.
        presented = _digest(token.strip())
        if not any(hmac.compare_digest(presented, digest) for digest in self._digests):
            raise Unauthorized("invalid API key")
        return presented
