"""Trace list paging shared by the surfaces: keyset cursors everywhere, and offset (or page
number) paging where a seed has it, capped: deep offsets cost more with every page
(ClickHouse reads and merges everything before the offset), cursors do not."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from api.errors import bad_param
from api.params import encode_cursor, key_cursor
from sinks.repositories.traces import Trace, TraceQuery, TraceRepository

#: The deepest offset served; beyond it the request must use the cursor.
MAX_OFFSET = 10_000


@dataclass(frozen=True)
class Paging:
    """One page request: ``limit`` traces after ``after`` (a cursor's key) or at ``offset``."""

    limit: int
    offset: int = 0
    after: tuple[int, str] | None = None


def paging(query: Mapping[str, str], limit: int, offset: int, offset_param: str) -> Paging:
    """The page a request asks for; 400 when it gives both a cursor and an offset, or an offset past the cap."""
    after = key_cursor(query.get("cursor"))
    if after is not None and offset_param in query:
        raise bad_param("cursor", f"give cursor or {offset_param}, not both")
    if offset > MAX_OFFSET:
        raise bad_param(offset_param, f"pages deeper than {MAX_OFFSET} traces are served by cursor only: "
                                      "follow next_cursor from the first page instead")
    return Paging(limit, offset, after)


@dataclass(frozen=True)
class TracesPage:
    traces: list[Trace]
    next_cursor: str | None  # where the next page starts; None on the last page


async def read_page(repo: TraceRepository, org_id: str, query: TraceQuery, page: Paging,
                    first: Sequence[str]) -> TracesPage:
    """The traces of ``page``, newest first, with the ``first`` values the surface shows, and
    the cursor of the page after it."""
    if page.after is not None:
        found = await repo.page(org_id, query, page.limit, page.after, first)
    else:
        found = await repo.offset_page(org_id, query, page.limit, page.offset, first)
    return TracesPage(found.traces, encode_cursor(list(found.next_key)) if found.next_key else None)
