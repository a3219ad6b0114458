from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from endpoints.models import Category, Endpoint, EventType, Merchant, User

DEMO_USER = "demo"
DEMO_MERCHANT = "Demo Coffee Shop"


def login_file() -> Any:
    return settings.VAR_DIR / "demo_login.txt"


class Command(BaseCommand):
    help = "Create a demo merchant with a login, two endpoints and a few events (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--events", type=int, default=5, help="How many events to emit.")

    def handle(self, *args: Any, **options: Any) -> None:
        from deliveries.models import Event

        if User.objects.filter(username=DEMO_USER).exists():
            self.stdout.write(self.login_line())
            return
        password = secrets.token_urlsafe(9)
        with transaction.atomic():
            merchant = Merchant.objects.create(name=DEMO_MERCHANT)
            User.objects.create_user(
                DEMO_USER, email="demo@example.com", password=password, merchant=merchant
            )
            self.create_endpoints(merchant)
            types = ["receipts.update", "inventory_levels.update", "pos.payment.completed"]
            for i in range(options["events"]):
                name = types[i % len(types)]
                sample = EventType.objects.get(name=name).sample
                Event.objects.emit(merchant, name, sample)
                if options["verbosity"] > 1:
                    self.stdout.write(f"  event {i + 1}/{options['events']}: {name}")
        login_file().write_text(f"{DEMO_USER} {password}\n")
        self.stdout.write(self.login_line())

    def create_endpoints(self, merchant: Merchant) -> None:
        # Loopback URLs only: the demo must never send traffic off this machine. They start
        # disabled until the merchant points them at a receiver of their own.
        for path, category, types in [
            ("sales", "sales", ["receipts.update", "credit_note.update"]),
            ("stock", "inventory", ["inventory_levels.update"]),
        ]:
            endpoint = Endpoint.objects.create(
                merchant=merchant,
                url=f"http://127.0.0.1:9/demo/{path}",
                description=f"Demo {path} receiver: point it at your server and enable it.",
                category=Category.objects.get(slug=category),
                is_enabled=False,
                disabled_reason=Endpoint.DisabledReason.MERCHANT,
            )
            endpoint.event_types.set(EventType.objects.filter(name__in=types))

    def login_line(self) -> str:
        try:
            user, password = login_file().read_text().split()
        except (OSError, ValueError):
            return f"Demo login: user {DEMO_USER!r} (reset its password with changepassword)"
        return f"Demo login: user {user!r}, password {password!r}"
