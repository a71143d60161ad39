"""Maps an HTTP method and raw path to a model operation and its URI labels.

The route table is built from every operation's `http.method` and `http.requestUri` in the
botocore model. Paths are matched segment by segment on the RAW (still percent-encoded) path
and each segment is decoded only after splitting, because labels such as TagResource's
`{resourceArn}` carry an encoded '/' (`arn%3Aaws%3Aprofile%3A...%3Adomains%2Fname`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from botocore.model import ServiceModel

_LABEL = re.compile(r"^\{([^{}]+?)(\+?)\}$")

# Sort ranks of a segment kind: a literal segment is more specific than a label, and a label
# more specific than a greedy label, so `/profiles/keys/delete` is tried before
# `/profiles/{ProfileId}/...` and both before `{Key+}`.
_LITERAL, _SINGLE, _GREEDY = 0, 1, 2


@dataclass(frozen=True)
class _Segment:
    kind: int
    text: str  # the literal text, or the label name


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    operation: str
    segments: tuple[_Segment, ...]

    @property
    def specificity(self) -> tuple[int, ...]:
        return tuple(segment.kind for segment in self.segments)

    def match(self, raw_segments: list[str]) -> dict[str, str] | None:
        params: dict[str, str] = {}
        index = 0
        for position, segment in enumerate(self.segments):
            if segment.kind == _GREEDY:
                # A greedy label takes what the later segments leave over (at least one).
                rest = len(self.segments) - position - 1
                taken = raw_segments[index : len(raw_segments) - rest]
                if not taken or any(part == "" for part in taken):
                    return None
                params[segment.text] = unquote("/".join(taken))
                index += len(taken)
                continue
            if index >= len(raw_segments):
                return None
            raw = raw_segments[index]
            if segment.kind == _LITERAL:
                if unquote(raw) != segment.text:
                    return None
            else:
                if raw == "":
                    return None
                params[segment.text] = unquote(raw)
            index += 1
        if index != len(raw_segments):
            return None
        return params


def _split(raw_path: str) -> list[str]:
    """Split a raw path into raw segments, ignoring one leading and one trailing slash."""
    path = raw_path.split("?", 1)[0]
    if path.startswith("/"):
        path = path[1:]
    if path.endswith("/"):
        path = path[:-1]
    return path.split("/") if path else []


def _compile(template: str) -> tuple[_Segment, ...]:
    segments = []
    for part in _split(template):
        label = _LABEL.match(part)
        if label is None:
            segments.append(_Segment(_LITERAL, part))
        else:
            kind = _GREEDY if label.group(2) else _SINGLE
            segments.append(_Segment(kind, label.group(1)))
    return tuple(segments)


class Router:
    """Route table of one service model; `match` returns (operation, decoded URI labels)."""

    def __init__(self, service_model: ServiceModel) -> None:
        routes: dict[str, list[Route]] = {}
        seen: dict[tuple[str, tuple[tuple[int, str], ...]], str] = {}
        for name in service_model.operation_names:
            http = service_model.operation_model(name).http
            method = str(http.get("method", "POST")).upper()
            # A query part of requestUri (e.g. `/path?tagging`) is not part of the path.
            template = str(http.get("requestUri", "/")).split("?", 1)[0]
            segments = _compile(template)
            # Two operations whose templates differ only in label names would be ambiguous;
            # fail loudly at start-up rather than route one of them silently.
            key = (method, tuple((s.kind, s.text if s.kind == _LITERAL else "") for s in segments))
            if key in seen:
                raise ValueError(f"ambiguous routes: {seen[key]} and {name} ({method} {template})")
            seen[key] = name
            routes.setdefault(method, []).append(Route(method, template, name, segments))
        for table in routes.values():
            table.sort(key=lambda route: route.specificity)
        self._routes = routes
        # (method, segment count) -> the routes that can match a path of that many segments,
        # still most specific first: a request tries a handful of routes, not all of them.
        self._by_length: dict[tuple[str, int], list[Route]] = {}
        self._longest = max((len(r.segments) for r in self.routes()), default=0)

    def routes(self) -> list[Route]:
        return [route for table in self._routes.values() for route in table]

    def match(self, method: str, raw_path: str) -> tuple[str, dict[str, str]] | None:
        raw_segments = _split(raw_path)
        for route in self._candidates(method.upper(), len(raw_segments)):
            params = route.match(raw_segments)
            if params is not None:
                return route.operation, params
        return None

    def operations_at(self, raw_path: str) -> list[tuple[str, str]]:
        """(method, operation) of every route that matches `raw_path` under some method: what
        a request with the wrong method on a known path is told it may use instead."""
        found = []
        for method in sorted(self._routes):
            matched = self.match(method, raw_path)
            if matched is not None:
                found.append((method, matched[0]))
        return found

    def _candidates(self, method: str, length: int) -> list[Route]:
        # Paths longer than every template can only match greedy labels; they share one entry
        # so a client cannot grow the cache with ever longer paths.
        if method not in self._routes:
            return []  # and no cache entry: the method is the client's to choose
        length = min(length, self._longest + 1)
        key = (method, length)
        found = self._by_length.get(key)
        if found is None:
            found = [
                route
                for route in self._routes.get(method, ())
                if len(route.segments) == length
                or (
                    any(s.kind == _GREEDY for s in route.segments) and len(route.segments) <= length
                )
            ]
            self._by_length[key] = found
        return found
