"""Helpers that dashboard views of every app share: inline requests, redirects back, and
pages of a table by id."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.http import url_has_allowed_host_and_scheme

from lib.text import escape_surrogates

PAGE_SIZE = 50

M = TypeVar("M", bound=Model)


def is_inline(request: HttpRequest) -> bool:
    """True for a request made by static/app.js, which wants a fragment, not a page."""
    return request.headers.get("X-Inline") == "1"


def redirect_back(request: HttpRequest, default: str) -> HttpResponse:
    """Back to the page the form was on (it posts `next`), or to `default`."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return redirect(target)
    return redirect(default)


def query_without(request: HttpRequest, *names: str) -> str:
    """The page's query string less `names`: the filters that page links keep."""
    query = request.GET.copy()
    for name in names:
        query.pop(name, None)
    return query.urlencode()


def _parse_id(raw: str | None) -> int | None:
    try:
        value = int(raw or "")
    except ValueError:
        return None
    return value if value >= 0 else None


@dataclass
class KeysetPage:
    """One page of a table, newest first, with the ids the links around it need."""

    items: list[Any]
    newer: int | None  # `?after=` of the page before this one, if any
    older: int | None  # `?before=` of the page after this one, if any
    is_first: bool


def keyset_page(qs: QuerySet[M], params: Mapping[str, str], size: int = PAGE_SIZE) -> KeysetPage:
    """Page `qs` by id (`?before=<id>` / `?after=<id>`), newest first.

    An OFFSET would read every skipped row and a page count would COUNT them all; with
    millions of rows both are slow, while a seek on an index that ends in id is not.
    """
    before, after = _parse_id(params.get("before")), _parse_id(params.get("after"))
    if after is not None and before is None:
        rows = list(qs.filter(id__gt=after).order_by("id")[: size + 1])
        has_newer = len(rows) > size
        rows = rows[:size][::-1]
        has_older = bool(rows)  # the page was reached from an older one
    else:
        if before is not None:
            qs = qs.filter(id__lt=before)
        rows = list(qs.order_by("-id")[: size + 1])
        has_older = len(rows) > size
        rows = rows[:size]
        has_newer = before is not None
    return KeysetPage(
        items=rows,
        newer=rows[0].pk if rows and has_newer else None,
        older=rows[-1].pk if rows and has_older else None,
        is_first=not has_newer,
    )


def pretty_json(text: str) -> str:
    """A logged body, indented when it is JSON; anything else as it was received.

    A lone surrogate (JSON may escape one, UTF-8 cannot encode it) is shown as its escape.
    """
    try:
        return escape_surrogates(json.dumps(json.loads(text), indent=2, ensure_ascii=False))
    except ValueError:
        return escape_surrogates(text)


class NotHere(Http404):
    """A dashboard object that is not there for this user: deleted, or another merchant's.

    The 404 page shows its message ("This webhook does not exist: ..."), so a page reached
    with Back after a delete says what happened instead of a bare "Not found".
    """


def get_for_user_or_404(queryset: QuerySet[M], noun: str, **lookup: Any) -> M:
    """The one object `lookup` finds in `queryset`, or a 404 that names what is missing.

    Another merchant's object reads exactly like one that was deleted.
    """
    found = queryset.filter(**lookup).first()
    if found is None:
        raise NotHere(
            f"This {noun} does not exist: it was deleted, or it belongs to another account."
        )
    return found
