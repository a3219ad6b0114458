from __future__ import annotations

import os
import re
import secrets
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from accounts.models import Merchant, User
from catalogue.models import Category, EventType
from endpoints.models import Endpoint
from lib import files
from lib.progress import ProgressBar
from tooling.models import Inspector

DEMO_USER = "demo"
DEMO_MERCHANT = "Demo Coffee Shop"
DEMO_INSPECTOR = "Demo receiver"
# The placeholder URLs of demo endpoints seeded before they pointed at an inspector.
_OLD_DEMO_URL = re.compile(r"^http://127\.0\.0\.1:9/demo/")


def login_file() -> Any:
    return settings.VAR_DIR / "demo_login.txt"


class Command(BaseCommand):
    help = (
        "Create a demo merchant with a login, an inspector, two endpoints sending to it and a "
        "few events (idempotent)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--events", type=int, default=5, help="How many events to emit.")

    def handle(self, *args: Any, **options: Any) -> None:
        from deliveries import emit

        demo = User.objects.filter(username=DEMO_USER).select_related("merchant").first()
        if demo is not None:
            if demo.merchant is not None:
                self.point_at_inspector(demo.merchant)
            self.stdout.write(self.login_line())
            return
        password = secrets.token_urlsafe(9)
        with transaction.atomic():
            merchant = Merchant.objects.create(name=DEMO_MERCHANT)
            User.objects.create_user(
                DEMO_USER, email="demo@example.com", password=password, merchant=merchant
            )
            self.create_endpoints(merchant, self.demo_inspector(merchant))
            types = ["receipts.update", "inventory_levels.update", "pos.payment.completed"]
            count = options["events"]
            # One transaction: Ctrl-C leaves no half-seeded demo, and running again starts over.
            many = count >= 100 and options["verbosity"] > 0
            bar = ProgressBar(self.stderr, "events", total=count, enabled=many)
            for i in range(count):
                name = types[i % len(types)]
                sample = EventType.objects.get(name=name).sample
                emit(merchant, name, sample)
                bar.update(i + 1, f"{i + 1:,}/{count:,}")
            bar.close(count, f"{count:,}/{count:,}")
        files.write_private(login_file(), f"{DEMO_USER} {password}\n")
        self.stdout.write(self.login_line())

    def create_endpoints(self, merchant: Merchant, inspector: Inspector) -> None:
        # They send to the demo inspector on this very server, so a new user sees real signed
        # deliveries arrive with no server of their own, and nothing leaves this machine.
        for path, category, types in [
            ("sales", "sales", ["receipts.update", "credit_note.update"]),
            ("stock", "inventory", ["inventory_levels.update"]),
        ]:
            endpoint = Endpoint.objects.create(
                merchant=merchant,
                url=self.inspector_url(inspector),
                description=f"Demo {path} webhook: it sends to the inspector “{inspector.name}”.",
                category=Category.objects.get(slug=category),
            )
            endpoint.event_types.set(EventType.objects.filter(name__in=types))

    def demo_inspector(self, merchant: Merchant) -> Inspector:
        inspector = Inspector.objects.filter(merchant=merchant, name=DEMO_INSPECTOR).first()
        return inspector or Inspector.objects.create(merchant=merchant, name=DEMO_INSPECTOR)

    def inspector_url(self, inspector: Inspector) -> str:
        # `make run` serves on PORT; the worker reaches the inspector there, on loopback.
        port = os.environ.get("PORT", "8000")
        return f"http://127.0.0.1:{port}{inspector.path}"

    def point_at_inspector(self, merchant: Merchant) -> None:
        """Bring an existing demo up to date: its endpoints send to the inspector on PORT.

        Only URLs the seed wrote are touched: the old disabled placeholders, and inspector
        URLs on another port. A URL the merchant typed in stays as it is.
        """
        endpoints = list(Endpoint.objects.for_merchant(merchant))
        placeholders = [e for e in endpoints if _OLD_DEMO_URL.match(e.url)]
        inspector = Inspector.objects.filter(merchant=merchant, name=DEMO_INSPECTOR).first()
        if inspector is None:
            if not placeholders:
                return  # the merchant deleted the demo inspector: leave it deleted
            inspector = self.demo_inspector(merchant)
        url = self.inspector_url(inspector)
        ours = re.compile(rf"^http://127\.0\.0\.1:\d+{re.escape(inspector.path)}$")
        for endpoint in endpoints:
            if _OLD_DEMO_URL.match(endpoint.url):
                endpoint.url = url
                endpoint.save(update_fields=["url", "updated_at"])
                endpoint.enable()
            elif ours.match(endpoint.url) and endpoint.url != url:
                endpoint.url = url
                endpoint.save(update_fields=["url", "updated_at"])

    def login_line(self) -> str:
        try:
            user, password = login_file().read_text().split()
        except (OSError, ValueError):
            return f"Demo login: user {DEMO_USER!r} (reset its password with changepassword)"
        return f"Demo login: user {user!r}, password {password!r}"
