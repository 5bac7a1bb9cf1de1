"""Which route a path belongs to, for the layers that answer before routing (the language,
the fast path, CORS): they ask by route name, so the route table stays the one place that
says what the addresses are."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

from starlette.routing import BaseRoute, Mount, Route


class RouteIndex:
    """The routes named in `names`, matched against a path in the table's order."""

    def __init__(self, routes: Sequence[BaseRoute], names: Iterable[str]) -> None:
        wanted = set(names)
        self._patterns: list[tuple[str, Any]] = []
        for route in routes:
            if isinstance(route, Route | Mount) and route.name in wanted:
                self._patterns.append((route.name, route.path_regex))
                wanted.discard(route.name)
        if wanted:
            raise ValueError(f"no route named {sorted(wanted)}")
        # Readers ask for few distinct addresses; a flood of others only evicts.
        self.match = lru_cache(maxsize=4096)(self._match)

    def _match(self, path: str) -> tuple[str, str | None] | None:
        """(route name, its `slug` if it has one), or None when no named route matches."""
        for name, pattern in self._patterns:
            found = pattern.match(path)
            if found:
                return name, found.groupdict().get("slug")
        return None

    def __contains__(self, path: str) -> bool:
        return self.match(path) is not None
