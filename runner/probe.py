"""One readiness probe over HTTP, for the children the supervisor runs."""

from __future__ import annotations

import urllib.error
import urllib.request


def answers_ok(url: str, *, timeout_s: float = 2.0) -> bool:
    """GET `url` answers 200 within `timeout_s`; False on any other status or no answer."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False
