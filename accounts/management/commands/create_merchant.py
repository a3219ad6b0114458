from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from accounts.models import Merchant, User


class Command(BaseCommand):
    help = "Create a merchant and its first user; prints the merchant id."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="The merchant's display name.")
        parser.add_argument("--user", required=True, help="Username of the merchant's first user.")
        parser.add_argument("--password", required=True, help="That user's password.")
        parser.add_argument("--email", default="", help="That user's e-mail (for failure alerts).")

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["name"].strip()
        if not name:
            raise CommandError("The merchant name must not be empty.")
        if User.objects.filter(username=options["user"]).exists():
            raise CommandError(f"A user named {options['user']!r} already exists.")
        with transaction.atomic():
            merchant = Merchant.objects.create(name=name)
            User.objects.create_user(
                options["user"],
                email=options["email"],
                password=options["password"],
                merchant=merchant,
            )
        self.stdout.write(merchant.public_id)
