"""The builds of the model that answered lately, and which of a request's answers to keep.

During a rolling upgrade two Tritons behind one channel serve different exports under one name;
every answer names the build that computed it (`wire.FINGERPRINT`). The service keeps the parts of
a request whose build is the majority's (`majority`) and sends the others again; `RecentBuilds`
says whether two builds are being served, so that the service stops splitting a request's texts,
and lists them for `/health/ready`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence

# Two builds answering within this long of each other are taken as an upgrade in progress: long
# enough to span the gaps between requests at low traffic, short enough that requests are split
# again soon after the last old replica is gone.
RECENT_BUILDS_S = 60.0


def majority(builds: Sequence[str]) -> str:
    """The build most of `builds` name; of a tie, the one named first."""
    counts = Counter(builds)
    # Counter keeps first-seen order, and max returns the first of equal counts.
    return max(counts, key=counts.__getitem__)


class RecentBuilds:
    """The builds seen in answers within the last `window_s` seconds of `clock`.

    Usage: `builds = RecentBuilds(); builds.saw("3f2a..."); builds.mixed`
    """

    def __init__(
        self, *, window_s: float = RECENT_BUILDS_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._window_s = window_s
        self._clock = clock
        self._last_seen: dict[str, float] = {}  # in the order first seen
        self.latest: str | None = None  # the build of the latest answer, however old

    def saw(self, build: str) -> None:
        self._last_seen[build] = self._clock()
        self.latest = build

    def recent(self) -> list[str]:
        """The builds seen within the window, in the order they were first seen."""
        now = self._clock()
        for build, seen in list(self._last_seen.items()):
            if now - seen > self._window_s:
                del self._last_seen[build]
        return list(self._last_seen)

    @property
    def mixed(self) -> bool:
        """Two builds or more answered within the window: an upgrade is in progress."""
        return len(self.recent()) > 1
