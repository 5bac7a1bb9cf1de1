"""A short-lived, per-process cache for what public pages show.

When a letter goes viral, most requests are readers reloading to watch the count. Each
process keeps the rendered answer for `CACHE_SECONDS` (default 0.5 s), so the database
sees at most a couple of reads per second per process and page, however many readers
there are. A process drops its copy at once when it confirms a signature itself, and the
others catch up within the TTL. Only one request per key loads at a time (the others wait
for its result), so an expired entry never sends a burst of identical queries.

Keys are made by `key()`. Entries carry tags, and are dropped by tag: every copy of one
letter by `letter_tag(id)`, the lists of letters by LISTS, remembered "no such letter"
answers by MISSING (a letter just published must not stay missing).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")
Tags = Iterable[Hashable] | Callable[[Any], Iterable[Hashable]]

LISTS = "lists"
MISSING = "missing"
# Where a request's answer lists what it shows (scope["state"]), for the fast path.
ANSWER_TAGS = "cache_tags"
# A page the same for every reader of its address (the letter page in one language): a
# shared cache in front (nginx, a CDN) may answer it for a second; the live count on it is
# kept fresh by the page's event stream, and browsers revalidate by ETag after that.
SHARED_PAGE = "public, max-age=1"


def key(area: str, *parts: Hashable) -> tuple[Hashable, ...]:
    """The key of a cached answer: its area, then what tells it apart within it."""
    return (area, *parts)


def letter_tag(letter_id: int) -> tuple[str, int]:
    """The tag of every cached copy of one letter."""
    return ("letter", letter_id)


def rules_tag(letter_id: int) -> tuple[str, int]:
    """The tag of a letter's signing rules (its status and allowed domains): forgotten when
    its authors change it or it closes, not when a confirmation moves its counts."""
    return ("letter-rules", letter_id)


# How long a process keeps a letter's signing rules (app.state.rules), at least. Once a
# letter is published its domains can only be added to, never removed or renamed
# (letters.authors.drafts), and a confirmation checks the letter is still open: a copy
# this old only refuses a just-added domain, or takes a pending signature for a letter
# that just closed, whose link then cannot confirm. The process where the authors made
# the change forgets its copy at once.
RULES_SECONDS = 10.0


def rules_seconds(cache_seconds: float) -> float:
    """The rules' lifetime: none when CACHE_SECONDS is 0 (nothing cached), else at least
    RULES_SECONDS."""
    return 0.0 if cache_seconds <= 0 else max(cache_seconds, RULES_SECONDS)


@dataclass
class _Entry:
    expires: float
    value: Any = None
    error: BaseException | None = None
    tags: frozenset[Hashable] = field(default_factory=frozenset)


class TTLCache:
    def __init__(
        self,
        ttl: float,
        max_entries: int = 2048,
        remember: tuple[type[BaseException], ...] = (),
    ) -> None:
        """`remember`: exceptions cached like values (e.g. "no such letter")."""
        self.ttl = ttl
        self.max_entries = max_entries
        self.remember = remember
        self._entries: dict[Hashable, _Entry] = {}
        self._loading: dict[Hashable, asyncio.Lock] = {}

    def _fresh(self, key: Hashable) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None and entry.expires > time.monotonic():
            return entry
        return None

    @staticmethod
    def _unwrap(entry: _Entry) -> Any:
        if entry.error is not None:
            raise entry.error
        return entry.value

    async def get(self, key: Hashable, load: Callable[[], Awaitable[T]], tags: Tags = ()) -> T:
        """The fresh value under `key`, else `load()`'s, kept with `tags` (or `tags(value)`)."""
        if self.ttl <= 0:
            return await load()
        entry = self._fresh(key)
        if entry is not None:
            return self._unwrap(entry)  # type: ignore[no-any-return]
        lock = self._loading.setdefault(key, asyncio.Lock())
        async with lock:
            entry = self._fresh(key)
            if entry is None:
                expires = time.monotonic() + self.ttl
                try:
                    value = await load()
                    found = tags(value) if callable(tags) else tags
                    entry = _Entry(expires, value=value, tags=frozenset(found))
                except self.remember as error:
                    entry = _Entry(expires, error=error, tags=frozenset([MISSING]))
                finally:
                    self._loading.pop(key, None)
                self._store(key, entry)
        return self._unwrap(entry)  # type: ignore[no-any-return]

    def peek(self, key: Hashable) -> Any:
        """The fresh value stored under `key` (not an error), or None."""
        entry = self._fresh(key) if self.ttl > 0 else None
        return None if entry is None or entry.error is not None else entry.value

    def put(self, key: Hashable, value: Any, tags: Iterable[Hashable]) -> None:
        if self.ttl > 0:
            entry = _Entry(time.monotonic() + self.ttl, value=value, tags=frozenset(tags))
            self._store(key, entry)

    def _store(self, key: Hashable, entry: _Entry) -> None:
        if len(self._entries) >= self.max_entries:
            # Drop the older half: a flood of distinct keys (random slugs) cannot grow it.
            for old in list(self._entries)[: self.max_entries // 2]:
                del self._entries[old]
        self._entries[key] = entry

    def forget(self, *tags: Hashable) -> None:
        """Drop every entry carrying one of `tags`."""
        dropped = set(tags)
        for stale in [k for k, entry in self._entries.items() if entry.tags & dropped]:
            del self._entries[stale]

    def clear(self) -> None:
        self._entries.clear()


def etag_for(*parts: str | bytes) -> str:
    """A strong ETag for an answer made of `parts`."""
    digest = hashlib.blake2b(digest_size=12)
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\x00")
    return f'"{digest.hexdigest()}"'
