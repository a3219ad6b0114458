from __future__ import annotations

from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = (
        "Run one delivery worker: an RQ SimpleWorker with the scheduler and the sweep. "
        "Run more of them (on any machine sharing the database and Redis) to scale out."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--burst", action="store_true", help="Stop when the queue is empty.")
        parser.add_argument("--name", default=None, help="Worker name shown in the RQ dashboard.")

    def handle(self, *args: Any, **options: Any) -> None:
        call_command(
            "rqworker",
            "default",
            worker_class="deliveries.worker.DeliveryWorker",
            with_scheduler=True,
            burst=options["burst"],
            name=options["name"],
            # RQ's INFO line per job halves throughput (measured); warnings still show.
            verbosity=0 if options["verbosity"] <= 1 else options["verbosity"],
        )
