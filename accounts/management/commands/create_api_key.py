from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import ApiKey, Merchant


class Command(BaseCommand):
    help = "Create an API key for a merchant and print it (it cannot be shown again)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("merchant", help="Merchant public id (mrc_...).")
        parser.add_argument("--name", default="Command line", help="A name to tell keys apart.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            merchant = Merchant.objects.get(public_id=options["merchant"])
        except Merchant.DoesNotExist:
            raise CommandError(f"No merchant with id {options['merchant']!r}.") from None
        _, raw = ApiKey.issue(merchant, options["name"])
        self.stdout.write(raw)
