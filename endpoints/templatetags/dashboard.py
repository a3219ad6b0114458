"""Template helpers for the dashboard: numbers, statuses and the 24-hour chart."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from django import template
from django.utils import timezone
from django.utils.timesince import timesince, timeuntil

from deliveries.models import Delivery
from deliveries.stats import Bucket, Counts
from lib import text

register = template.Library()

# In SVG units; the page scales the chart to its width, so these are close to pixels there.
CHART_WIDTH = 1100
CHART_NARROW_WIDTH = 360  # a phone's width: its labels stay at about their size in pixels
CHART_HEIGHT = 220
CHART_LEFT = 44  # room for the y-axis labels
CHART_BOTTOM = 24  # room for the hour labels
CHART_TOP = 8

# What a bar stacks, bottom up, with the legend's words and the per-hour table's header.
# Retrying after a failure has its own colour: drawn grey with those not tried yet, a webhook
# whose every delivery was failing showed no red or amber at all.
CHART_KINDS = [
    ("succeeded", "Succeeded", "Succeeded"),
    ("failed", "Failed", "Failed"),
    ("retrying", "Retrying after a failure", "Retrying"),
    ("waiting", "Waiting for a first attempt", "Waiting"),
    ("cancelled", "Cancelled", "Cancelled"),
]


@register.filter
def thousands(value: Any) -> str:
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return ""


@register.filter
def percent(value: float | None) -> str:
    """A success rate: 100% only when nothing failed, so 99.96% never rounds up to it."""
    if value is None:
        return "\N{EN DASH}"
    if 99.9 < value < 100:
        return ">99.9%"
    return f"{value:.1f}%".replace(".0%", "%")


@register.filter
def ago(value: datetime | None) -> str:
    """'just now', '5 minutes ago', '2 days, 3 hours ago'."""
    if value is None:
        return ""
    if timezone.now() - value < timedelta(minutes=1):
        return "just now"
    return f"{timesince(value)} ago"


@register.filter
def until(value: datetime | None) -> str:
    """'now', 'in 30 s', 'in 5 minutes': a retry 30 s away is not "in a moment"."""
    if value is None:
        return ""
    left = value - timezone.now()
    if left < timedelta(seconds=1):
        return "now"
    if left < timedelta(minutes=1):
        return f"in {int(left.total_seconds())} s"
    return f"in {timeuntil(value)}"


@register.filter
def reason_text(display: str) -> str:
    """'Auto-disabled: failing continuously' -> 'failing continuously' (the badge says the rest)."""
    return display.split(": ", 1)[-1]


_STATE_BADGES = {
    Delivery.State.SUCCEEDED: "badge-ok",
    Delivery.State.FAILED: "badge-bad",
    Delivery.State.RETRYING: "badge-warn",
    Delivery.State.HELD: "badge-warn",
    Delivery.State.WAITING: "badge-info",
    Delivery.State.SENDING: "badge-info",
    Delivery.State.CANCELLED: "badge-off",
}


@register.filter
def state_badge(state: str) -> str:
    """The badge class of a `Delivery.State`."""
    return _STATE_BADGES.get(state, "badge-info")


@register.filter
def no_answer(code: int | None, error: str | None) -> str:
    """ "no answer in 30 s" for a recorded timeout (408), "" when the receiver answered."""
    return text.no_answer(code, error or "")


def _nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten that is at least `value` (and at least 1)."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


def _on_sixth_hour(bucket: Bucket) -> bool:
    start = bucket.start
    return start.hour % 6 == 0 and start.minute == start.second == start.microsecond == 0


def _figures(counts: Counts) -> list[dict[str, Any]]:
    return [
        {"kind": kind, "label": label, "count": getattr(counts, kind)}
        for kind, label, _short in CHART_KINDS
    ]


def _summary(counts: Counts) -> str:
    return ", ".join(f"{f['count']:,} {f['label'].lower()}" for f in _figures(counts))


def _plot(buckets: list[Bucket], top: int, width: int, name: str) -> dict[str, Any]:
    """The bars of one drawing of the chart, `width` SVG units wide."""
    plot_height = CHART_HEIGHT - CHART_TOP - CHART_BOTTOM
    slot = (width - CHART_LEFT) / max(len(buckets), 1)
    bar_width = max(slot * 0.7, 1)
    bars = []
    for i, bucket in enumerate(buckets):
        x = CHART_LEFT + i * slot + (slot - bar_width) / 2
        y = CHART_TOP + plot_height
        segments = []
        for kind, _label, _short in CHART_KINDS:
            count = getattr(bucket.counts, kind)
            height = plot_height * count / top
            if count:
                y -= height
                segments.append({"kind": kind, "y": round(y, 1), "height": round(height, 1)})
        bars.append(
            {
                "bucket": bucket,
                "summary": _summary(bucket.counts),
                "x": round(x, 1),
                "width": round(bar_width, 1),
                "segments": segments,
                # Every sixth o'clock gets a label, so they never overlap on a phone; the
                # partial hour the window starts in gets none.
                "label": bucket.start.strftime("%H:00") if _on_sixth_hour(bucket) else "",
                "label_x": round(x + bar_width / 2, 1),
            }
        )
    return {
        "name": name,
        "bars": bars,
        "width": width,
        "height": CHART_HEIGHT,
        "left": CHART_LEFT,
        "plot_top": CHART_TOP,
        "plot_height": plot_height,
        "baseline": CHART_TOP + plot_height,
        "middle": CHART_TOP + plot_height / 2,
        "label_y": CHART_HEIGHT - 6,
    }


@register.inclusion_tag("webhooks/_chart.html")
def delivery_chart(buckets: list[Bucket]) -> dict[str, Any]:
    """Geometry of the stacked bar chart of deliveries per hour, drawn as inline SVG.

    Drawn twice, and the stylesheet shows one: a wide drawing for a desk, and a narrow one
    that fits a phone's width whole (a wide one scrolled sideways opened at the oldest hours,
    where there was nothing, with the y-axis scrolling away).
    """
    top = _nice_ceiling(max((b.counts.total for b in buckets), default=0))
    total = sum((b.counts for b in buckets), Counts())
    return {
        "plots": [
            _plot(buckets, top, CHART_WIDTH, "wide"),
            _plot(buckets, top, CHART_NARROW_WIDTH, "narrow"),
        ],
        "kinds": CHART_KINDS,
        "rows": [{"bucket": b, "figures": _figures(b.counts)} for b in buckets],
        "top": top,
        "summary": _summary(total),
    }
