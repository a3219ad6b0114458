from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from accounts.models import OperatorKey


class Command(BaseCommand):
    help = (
        "Create an operator key for the POS platform (manages merchants, acts for any one "
        "with a Merchant-Id header) and print it: it cannot be shown again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="A name to tell operator keys apart.")

    def handle(self, *args: Any, **options: Any) -> None:
        _, raw = OperatorKey.issue(options["name"][:100])
        self.stdout.write(raw)
