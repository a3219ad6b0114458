from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import Merchant
from deliveries.engine import retry_failed
from endpoints.models import Endpoint
from lib.progress import ProgressBar, stop_requested_on_ctrl_c
from lib.text import counted, deliveries
from lib.times import parse_since


class Command(BaseCommand):
    help = (
        "Schedule failed and cancelled deliveries again, for some webhooks or all of a "
        "merchant's, optionally only those created since a time. One webhook at a time, so it "
        "is safe to interrupt."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument(
            "--webhook",
            action="append",
            metavar="ep_...",
            help="A webhook's public id (repeat for more).",
        )
        which.add_argument("--merchant", metavar="mrc_...", help="Every webhook of a merchant.")
        parser.add_argument(
            "--since",
            default=None,
            help="Only deliveries created since: 24h, 7d, 30m, or an ISO date / date-time.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            since = parse_since(options["since"]) if options["since"] else None
        except ValueError as exc:
            raise CommandError(f"--since: {exc}") from None
        endpoints = self.endpoints(options)
        total = len(endpoints)
        bar = ProgressBar(self.stderr, "webhooks", total=total, enabled=options["verbosity"] > 0)
        scheduled = done = 0
        skipped: list[str] = []
        # Each webhook's retry is its own transaction: Ctrl-C stops after the current one.
        with stop_requested_on_ctrl_c() as interrupted:
            for endpoint in endpoints:
                if not endpoint.is_enabled:
                    # Retrying a disabled webhook's deliveries would do nothing: they are not
                    # sent until it is enabled, and enabling is the merchant's decision.
                    skipped.append(endpoint.public_id)
                else:
                    scheduled += retry_failed(endpoint, since)
                done += 1
                bar.update(done, f"{done}/{total} webhooks, {scheduled:,} scheduled")
                if interrupted() and done < total:
                    self.stderr.write("")
                    self.stdout.write(f"Interrupted after {done} of {total} webhooks.")
                    self.stdout.write(self.summary(scheduled, done, skipped))
                    raise CommandError(
                        "Interrupted; run the command again for the rest.", returncode=130
                    )
        bar.close(done, f"{done}/{total} webhooks, {scheduled:,} scheduled")
        self.stdout.write(self.style.SUCCESS(self.summary(scheduled, done, skipped)))

    def endpoints(self, options: dict[str, Any]) -> list[Endpoint]:
        if options["merchant"]:
            merchant = Merchant.objects.filter(public_id=options["merchant"]).first()
            if merchant is None:
                raise CommandError(f"No merchant with id {options['merchant']!r}.")
            return list(Endpoint.objects.filter(merchant=merchant).order_by("pk"))
        wanted = options["webhook"]
        found = {e.public_id: e for e in Endpoint.objects.filter(public_id__in=wanted)}
        missing = [w for w in wanted if w not in found]
        if missing:
            raise CommandError(f"No webhook with id {', '.join(map(repr, missing))}.")
        return [found[w] for w in dict.fromkeys(wanted)]

    def summary(self, scheduled: int, done: int, skipped: list[str]) -> str:
        webhooks = counted(done - len(skipped), "webhook", "webhooks")
        line = f"Scheduled {deliveries(scheduled)} again across {webhooks}."
        if skipped:
            line += f" Skipped disabled webhook(s) (enable them first): {', '.join(skipped)}."
        return line
