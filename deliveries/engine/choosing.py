"""Choosing, fairly: which endpoints a claim serves, and how many slots each gets.

Slots go one at a time to the merchant with the fewest sends in flight (by level: 0 or 1 in
flight, 2-3, 4-7...), one slot each before anyone gets a second, between equals in the order
of a `Ranking`; within a merchant round robin over its endpoints; each endpoint within its
room, each merchant within its share of a worker's slots, the slow lane within its share.

A claim's cost must not grow with the crowd. A `Ranking` is built once per scan (a sort of
every endpoint with due work); each claim then walks it only until it has found a merchant
at the lowest level for every slot (10,000 merchants waiting: about 200 looked at, not
10,000 sorted), since no merchant further on could be served before those.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from operator import attrgetter

from django.conf import settings

from lib import http

# How far ahead a claim may take a rate-limited endpoint's next sends: each then waits for
# its moment on the event loop (deliveries/engine/pacing.py).
RATE_HORIZON = timedelta(seconds=0.25)


@dataclass
class Load:
    """What this worker already has in flight."""

    capacity: int  # sends this worker may have in flight at once
    by_merchant: Counter[int] = field(default_factory=Counter)
    retries: int = 0
    # Deliveries finished here but not yet recorded: their rows still say `delivering`, and
    # are left out of in-flight counts (by id, so a row recorded meanwhile is not left out twice).
    unrecorded: set[int] = field(default_factory=set)
    # Endpoints with a failed attempt not yet recorded: claimed again only once the outcome is
    # written, so a 410 disables, and a breaker opens, before anything more goes out.
    held: Counter[int] = field(default_factory=Counter)
    # The slow lane: endpoints slow or silent now, and this worker's sends in flight to them.
    slow: set[int] = field(default_factory=set)
    slow_in_flight: int = 0
    by_endpoint: Counter[int] = field(default_factory=Counter)  # this worker's sends in flight

    def copy(self) -> Load:
        """A snapshot for one claim, while sends keep changing the original."""
        return Load(
            self.capacity,
            Counter(self.by_merchant),
            self.retries,
            set(self.unrecorded),
            Counter(self.held),
            set(self.slow),
            self.slow_in_flight,
            Counter(self.by_endpoint),
        )


@dataclass
class Source:
    """An endpoint with due work, or one due one-off delivery."""

    merchant_id: int
    due: datetime
    cap: int
    busy: int = 0
    endpoint_id: int | None = None
    delivery: tuple[int, int] | None = None  # (id, attempts) of a one-off delivery
    timeout: float = http.MAX_TIMEOUT
    given: int = 0  # slots handed to it by this claim
    others: int = 0  # in flight from other workers when it was found (a reused scan)
    rate: int | None = None  # its rate limit, deliveries per second
    ordered: bool = False  # it has an ordering key
    # Oldest first by the second, in a random order within one: two workers that scanned the
    # same crowd do not both reach for the same endpoints first (half their claims found
    # nothing left).
    order: tuple[int, float] = (0, 0.0)

    def __post_init__(self) -> None:
        self.order = (math.floor(self.due.timestamp()), random.random())

    @property
    def room(self) -> int:
        """Slots it may take now: under its cap, and what its rate lets one claim take."""
        room = self.cap - self.busy
        if self.rate is not None:
            room = min(room, math.ceil(self.rate * RATE_HORIZON.total_seconds()))
        return room


class Ranking:
    """Endpoints with due work, by merchant, merchants in the order claims serve equals:
    the oldest waiting, the freshest, the second oldest, the second freshest... (under a
    backlog, fresh events are not queued behind the whole of it, and the backlog still drains
    at half the rate or more). Merchants added after it was built (fresh work) come first."""

    def __init__(self, sources: list[Source]) -> None:
        self.queues: dict[int, list[Source]] = {}  # merchant -> its endpoints, oldest due first
        self.by_endpoint: dict[int, Source] = {}
        for source in sorted(sources, key=attrgetter("due")):
            self.queues.setdefault(source.merchant_id, []).append(source)
            if source.endpoint_id is not None:
                self.by_endpoint[source.endpoint_id] = source
        merchants = sorted(self.queues, key=lambda m: self.queues[m][0].order)
        last = len(merchants) - 1
        ranked = sorted((min(2 * i, 2 * (last - i) + 1), m) for i, m in enumerate(merchants))
        self.order = [m for _, m in ranked]
        self.start = 0  # merchants before it have nothing left (served, until the next scan)
        self.fresh: list[int] = []

    def sources(self) -> list[Source]:
        return [s for own in self.queues.values() for s in own]

    def add(self, source: Source) -> None:
        """An endpoint found with new work since the scan (or found again)."""
        if source.endpoint_id is not None:
            self.remove(source.endpoint_id)
            self.by_endpoint[source.endpoint_id] = source
        own = self.queues.setdefault(source.merchant_id, [])
        own.append(source)
        if source.merchant_id not in self.fresh:
            self.fresh.append(source.merchant_id)

    def remove(self, endpoint_id: int) -> None:
        source = self.by_endpoint.pop(endpoint_id, None)
        if source is not None:
            self.queues[source.merchant_id].remove(source)

    def walk(self) -> Iterator[tuple[int, list[Source]]]:
        """(merchant, its endpoints) in serving order, skipping merchants with none left."""
        self.fresh = [m for m in self.fresh if self.queues.get(m)]
        for merchant in self.fresh:
            yield merchant, self.queues[merchant]
        fresh = set(self.fresh)
        while self.start < len(self.order) and not self.queues[self.order[self.start]]:
            self.start += 1
        for merchant in self.order[self.start :]:
            own = self.queues[merchant]
            if own and merchant not in fresh:
                yield merchant, own


def share(capacity: int, fraction: float) -> int:
    """A worker's slots for one kind of work (a merchant, the slow lane, retries): at least 1."""
    return max(1, math.floor(capacity * fraction))


def level(in_flight: int) -> int:
    """Merchants are served by level of sends in flight: 0 or 1 is level 0 (that one may be a
    send just finished, its outcome not yet written: a merchant posting steadily would
    otherwise wait behind a whole crowd with none), and each doubling above is one more."""
    return max(0, in_flight.bit_length() - 1)


@dataclass
class _Candidate:
    merchant_id: int
    queue: deque[Source]
    busy: int  # sends in flight, across every worker as the database counts them
    allowance: int  # slots it may still take from this worker


def allocate(
    ranking: Ranking, one_offs: list[Source], slots: int, load: Load, now: datetime
) -> list[Source]:
    """Hand out `slots` over the ranked endpoints and due one-off deliveries; sets each
    chosen source's `given` and returns the chosen."""
    merchant_share = share(load.capacity, settings.WEBHOOK_MERCHANT_SHARE)
    slow_room = share(load.capacity, settings.WEBHOOK_SLOW_LANE_SHARE) - load.slow_in_flight
    extra: dict[int, list[Source]] = {}
    for source in one_offs:
        extra.setdefault(source.merchant_id, []).append(source)
    candidates = _candidates(ranking, extra, slots, load, merchant_share, now)
    # By level of sends in flight, then by slots given in this claim (one each before anyone
    # gets a second), then by rank.
    heap = [(level(c.busy), 0, rank) for rank, c in enumerate(candidates)]
    heapq.heapify(heap)
    chosen: list[Source] = []
    while slots > 0 and heap:
        _, given, rank = heapq.heappop(heap)
        candidate = candidates[rank]
        own = candidate.queue
        source = own.popleft()
        if source.endpoint_id in load.slow:
            if slow_room <= 0:
                # The slow lane is full: this endpoint waits, the merchant's others may go.
                if own:
                    heapq.heappush(heap, (level(candidate.busy), given, rank))
                continue
            slow_room -= 1
        if not source.given:
            chosen.append(source)
        source.given += 1
        candidate.allowance -= 1
        candidate.busy += 1
        slots -= 1
        if source.given < source.room:
            own.append(source)  # to the back: the merchant's next endpoint goes next
        if own and candidate.allowance > 0:
            heapq.heappush(heap, (level(candidate.busy), given + 1, rank))
    return chosen


def _candidates(
    ranking: Ranking,
    extra: dict[int, list[Source]],
    slots: int,
    load: Load,
    share: int,
    now: datetime,
) -> list[_Candidate]:
    """The merchants a claim may serve, in ranking order, each with its endpoints ready now;
    the walk stops once enough merchants at the lowest level were found for every slot."""
    candidates: list[_Candidate] = []
    lowest = 0  # merchants at level 0 with an endpoint outside the slow lane
    by_endpoint, held, slow = load.by_endpoint, load.held, load.slow

    def walk() -> Iterator[tuple[int, list[Source]]]:
        for merchant, own in extra.items():
            yield merchant, own + ranking.queues.get(merchant, [])
        for merchant, own in ranking.walk():
            if merchant not in extra:
                yield merchant, own

    for merchant, own in walk():
        queue: deque[Source] = deque()
        in_flight = 0
        for source in own:
            if source.due > now or (source.endpoint_id and held.get(source.endpoint_id)):
                continue
            source.given = 0
            if source.endpoint_id is not None:
                source.busy = source.others + by_endpoint.get(source.endpoint_id, 0)
            in_flight += source.busy
            if source.room > 0:
                queue.append(source)
        mine = load.by_merchant.get(merchant, 0)
        if not queue or share - mine <= 0:
            continue  # a merchant holding its whole share of this worker waits
        busy = max(in_flight, mine)
        candidates.append(_Candidate(merchant, queue, busy, share - mine))
        if level(busy) == 0 and any(s.endpoint_id not in slow for s in queue):
            lowest += 1
            if lowest >= slots:
                break
    return candidates
