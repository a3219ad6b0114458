from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import Merchant
from deliveries import emit
from deliveries.models import UnknownEventType
from lib.event_data import InvalidEventData
from lib.text import deliveries


class Command(BaseCommand):
    help = "Emit one event for a merchant, as the POS system would; prints the event id."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("merchant", help="Merchant public id (mrc_...).")
        parser.add_argument("type", help="Event type, e.g. receipts.update.")
        parser.add_argument("data", help="The event's data as JSON.")
        parser.add_argument("--webhook-url", default=None, help="A one-off URL for this event.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            merchant = Merchant.objects.get(public_id=options["merchant"])
        except Merchant.DoesNotExist:
            raise CommandError(f"No merchant with id {options['merchant']!r}.") from None
        try:
            data = json.loads(options["data"])
        except json.JSONDecodeError as exc:
            raise CommandError(f"The data is not valid JSON: {exc}") from None
        try:
            event = emit(merchant, options["type"], data, webhook_url=options["webhook_url"])
        except (UnknownEventType, InvalidEventData) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"{event.public_id} (sequence {event.sequence}, {deliveries(event.deliveries.count())})"
        )
