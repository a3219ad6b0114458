from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import Merchant
from lib.progress import ProgressBar, stop_requested_on_ctrl_c
from operations import retention


class Command(BaseCommand):
    help = (
        "Delete delivery attempts, ended deliveries and events past their merchant's retention "
        "period (RETENTION_DAYS, or the merchant's own), in small batches. Safe to interrupt "
        "and to run again; the scheduler runs it daily."
    )

    INTERRUPTED = "Interrupted; nothing was half-deleted. Run the command again to finish."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            type=int,
            metavar="DAYS",
            default=None,
            help="One retention period for every merchant, overriding their own and the default.",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be deleted; delete nothing."
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=retention.BATCH_SIZE,
            help="Ids per transaction (default %(default)s).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["older_than"]
        if days is not None and days < 1:
            raise CommandError("--older-than must be at least 1 day.")
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        self.stdout.write(self.describe(days, options["dry_run"]))
        quiet = options["verbosity"] == 0
        bars: dict[str, ProgressBar] = {}
        last: dict[str, tuple[float, int]] = {}

        def progress(phase: str, fraction: float, deleted: int) -> None:
            if phase not in bars:
                for previous, bar in bars.items():
                    bar.close(*self.bar_state(last[previous]))
                bars[phase] = ProgressBar(self.stderr, phase, total=1.0, enabled=not quiet)
            last[phase] = (fraction, deleted)
            bars[phase].update(*self.bar_state(last[phase]))

        result = retention.PruneResult()
        try:
            with stop_requested_on_ctrl_c() as interrupted:
                retention.prune(
                    older_than_days=days,
                    dry_run=options["dry_run"],
                    batch_size=options["batch_size"],
                    progress=progress,
                    into=result,
                    should_stop=interrupted,
                )
        except KeyboardInterrupt:
            # A second Ctrl-C: the window in progress rolled back, and may have been counted.
            self.stderr.write("")
            self.stdout.write(f"Interrupted mid-batch. About: {result.summary()}")
            raise CommandError(self.INTERRUPTED, returncode=130) from None
        if not result.finished:
            self.stderr.write("")
            self.stdout.write(f"Interrupted. So far: {result.summary()}")
            raise CommandError(self.INTERRUPTED, returncode=130)
        for phase, bar in bars.items():
            bar.close(*self.bar_state((1.0, last[phase][1])))
        self.stdout.write(self.style.SUCCESS(result.summary()))

    def bar_state(self, state: tuple[float, int]) -> tuple[float, str]:
        fraction, deleted = state
        return fraction, f"{deleted:,}"

    def describe(self, days: int | None, dry_run: bool) -> str:
        mode = "Dry run: counting" if dry_run else "Deleting"
        if days is not None:
            return f"{mode} delivery logs older than {days} days, for every merchant."
        own = Merchant.objects.filter(retention_days__isnull=False).count()
        return (
            f"{mode} delivery logs older than {settings.RETENTION_DAYS} days "
            f"({own} merchant(s) with a retention period of their own)."
        )
