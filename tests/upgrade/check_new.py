"""Run by test_upgrade.py under this code, on the database that populate_old.py filled and
`migrate` upgraded: print what the new layout reads back, as JSON."""

from __future__ import annotations

import json
import os
import sys

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webhooks_project.settings")
sys.path.insert(0, os.getcwd())
django.setup()

from django.contrib.admin.models import LogEntry  # noqa: E402
from django.contrib.contenttypes.models import ContentType  # noqa: E402
from django.db import connection  # noqa: E402

from accounts.models import ApiKey, Merchant, User, merchant_for_oauth_token  # noqa: E402
from catalogue.models import EventType  # noqa: E402
from deliveries.models import Delivery, DeliveryAttempt, Event, IdempotencyKey  # noqa: E402
from endpoints.models import Endpoint  # noqa: E402
from tooling.models import Inspector, LoyaltyApp, LoyaltyCall  # noqa: E402

expected = json.loads(sys.argv[1])
merchant = Merchant.objects.get(public_id=expected["merchant"])
user = User.objects.get(username="upgrader")
endpoint = Endpoint.objects.get(public_id=expected["endpoint"])
delivery = Delivery.objects.select_related("event__event_type", "endpoint").get(
    public_id=expected["delivery"]
)
key = ApiKey.objects.authenticate(expected["raw_key"])
log_entry = LogEntry.objects.get()

counts = {}
with connection.cursor() as cursor:
    for table in sorted(connection.introspection.table_names(cursor)):
        cursor.execute(f"SELECT COUNT(*) FROM {connection.ops.quote_name(table)}")
        counts[table] = cursor.fetchone()[0]
content_types = {
    f"{app}.{model}": ContentType.objects.get_by_natural_key(app, model).pk
    for app, model in [
        ("accounts", "merchant"),
        ("accounts", "user"),
        ("accounts", "apikey"),
        ("accounts", "oauthclient"),
        ("catalogue", "category"),
        ("catalogue", "eventtype"),
        ("tooling", "inspector"),
        ("tooling", "inspectorrequest"),
        ("tooling", "loyaltyapp"),
        ("tooling", "loyaltycall"),
        ("endpoints", "endpoint"),
    ]
}
print(
    json.dumps(
        {
            "counts": counts,
            "content_types": content_types,
            "password_ok": user.check_password("pw-upgrade-1"),
            "user_merchant": user.merchant.public_id,
            "group_perms": sorted(user.get_group_permissions()),
            "user_perms": sorted(user.get_user_permissions()),
            "merchant_secret": merchant.webhook_secret,
            "merchant_limits": [merchant.retention_days, merchant.limit("webhooks")],
            "endpoint_secret": endpoint.secret,
            "endpoint_types": [t.name for t in endpoint.event_types.all()],
            "endpoint_category": endpoint.category.slug if endpoint.category else None,
            "key_merchant": key.merchant.public_id if key else None,
            "token_merchant": getattr(
                merchant_for_oauth_token(expected["raw_token"]), "public_id", None
            ),
            "delivery": [
                delivery.event.public_id,
                delivery.event.event_type.name,
                delivery.endpoint.public_id,
            ],
            "attempts": DeliveryAttempt.objects.filter(delivery=delivery).count(),
            "idempotency": IdempotencyKey.objects.filter(merchant=merchant, key="k1").count(),
            "events": Event.objects.filter(merchant=merchant).count(),
            "inspector_requests": Inspector.objects.get(
                public_id=expected["inspector"]
            ).requests.count(),
            "loyalty": [
                LoyaltyApp.objects.filter(merchant=merchant).count(),
                LoyaltyCall.objects.filter(merchant=merchant).count(),
            ],
            "event_type_sample": EventType.objects.get(name="upgrade.check").sample,
            "log_entry_object": str(log_entry.get_edited_object().public_id),
        }
    )
)
