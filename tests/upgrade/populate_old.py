"""Run by test_upgrade.py under the code of the commit before the app split (4d65318): fill
every table of the old layout and print what was written, as JSON.

Not a test module: it imports the old layout's models (endpoints.models holds everything).
"""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webhooks_project.settings")
sys.path.insert(0, os.getcwd())
django.setup()

from django.contrib.admin.models import ADDITION, LogEntry  # noqa: E402
from django.contrib.auth.models import Group, Permission  # noqa: E402
from django.contrib.contenttypes.models import ContentType  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402
from oauth2_provider.models import AccessToken  # noqa: E402

from deliveries.models import Delivery, DeliveryAttempt, Event, IdempotencyKey  # noqa: E402
from endpoints.models import (  # noqa: E402
    ApiKey,
    Category,
    Endpoint,
    EventType,
    Inspector,
    InspectorRequest,
    LoyaltyApp,
    LoyaltyCall,
    Merchant,
    OAuthClient,
    User,
)

merchant = Merchant.objects.create(name="Upgrade Coffee", retention_days=9, max_webhooks=7)
user = User.objects.create_user("upgrader", "u@example.com", "pw-upgrade-1", merchant=merchant)
staff = User.objects.create_superuser("upgrade-staff", "s@example.com", "pw-upgrade-2")
group = Group.objects.create(name="Merchant support")
group.permissions.add(Permission.objects.get(codename="change_merchant"))
user.groups.add(group)
user.user_permissions.add(Permission.objects.get(codename="view_endpoint"))
category = Category.objects.create(slug="upgrade", name="Upgrade", position=99)
event_type = EventType.objects.create(name="upgrade.check", category=category, sample={"a": 1})
_, raw_key = ApiKey.issue(merchant, "Till", created_by=user)
client, _ = OAuthClient.issue(merchant, "Integration", created_by=user)
raw_token = "upgrade-token-" + "x" * 20
AccessToken.objects.create(
    token=raw_token,
    application=client.application,
    expires=timezone.now() + timedelta(days=1),
    scope="api",
)
endpoint = Endpoint.objects.create(
    merchant=merchant, url="https://receiver.example/hook", category=category
)
endpoint.event_types.add(event_type)
inspector = Inspector.objects.create(merchant=merchant, name="Catcher")
InspectorRequest.objects.create(inspector=inspector, method="POST", path="/catch/x/", body="{}")
LoyaltyApp.objects.create(merchant=merchant, url="https://loyalty.example/")
LoyaltyCall.objects.create(
    merchant=merchant, action="order-complete", message_id="m1", url="https://loyalty.example/"
)
event = Event.objects.create(
    merchant=merchant, event_type=event_type, data={"n": 1}, sequence=merchant.next_sequence()
)
delivery = Delivery.objects.create(merchant=merchant, event=event, endpoint=endpoint)
DeliveryAttempt.objects.create(delivery=delivery, number=1, url=endpoint.url, succeeded=True)
IdempotencyKey.objects.create(merchant=merchant, key="k1", fingerprint="f" * 64, event=event)
LogEntry.objects.log_actions(
    user_id=staff.pk, queryset=[merchant], action_flag=ADDITION, change_message="Added."
)

counts = {}
with connection.cursor() as cursor:
    for table in sorted(connection.introspection.table_names(cursor)):
        cursor.execute(f"SELECT COUNT(*) FROM {connection.ops.quote_name(table)}")
        counts[table] = cursor.fetchone()[0]
content_types = {
    f"{ct.app_label}.{ct.model}": ct.pk for ct in ContentType.objects.filter(app_label="endpoints")
}
print(
    json.dumps(
        {
            "counts": counts,
            "content_types": content_types,
            "merchant": merchant.public_id,
            "merchant_secret": merchant.webhook_secret,
            "endpoint": endpoint.public_id,
            "endpoint_secret": endpoint.secret,
            "raw_key": raw_key,
            "raw_token": raw_token,
            "event": event.public_id,
            "delivery": delivery.public_id,
            "inspector": inspector.public_id,
        }
    )
)
