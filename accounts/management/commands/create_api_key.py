from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import ApiKey, Merchant


class Command(BaseCommand):
    help = "Create an API key for a merchant and print it (it cannot be shown again)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "merchant", help="Merchant public id (mrc_...), or the user name of one of its users."
        )
        parser.add_argument("--name", default="Command line", help="A name to tell keys apart.")

    def handle(self, *args: Any, **options: Any) -> None:
        given = options["merchant"]
        merchant = (
            Merchant.objects.filter(public_id=given).first()
            or Merchant.objects.filter(users__username=given).first()
        )
        if merchant is None:
            raise CommandError(f"No merchant with id or user name {given!r}.")
        _, raw = ApiKey.issue(merchant, options["name"])
        self.stdout.write(raw)
