"""Drop three foreign-key indexes that composite indexes already cover.

Every index is written on each emit and status change. The state change is Django's
AlterField(db_index=False); the database change is a plain DROP INDEX, because on SQLite
AlterField would copy the whole deliveries table (twice).
"""

import django.db.models.deletion
from django.db import migrations, models

# (index, table, column): Django's names for the single-column foreign-key indexes.
REDUNDANT = [
    ("deliveries_delivery_endpoint_id_76a728d2", "deliveries_delivery", "endpoint_id"),
    ("deliveries_delivery_merchant_id_668176e2", "deliveries_delivery", "merchant_id"),
    ("deliveries_event_merchant_id_cc6cc85d", "deliveries_event", "merchant_id"),
]


class Migration(migrations.Migration):
    dependencies = [
        ("deliveries", "0002_initial"),
        ("endpoints", "0005_tooling"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{name}"',
                    reverse_sql=f'CREATE INDEX "{name}" ON "{table}" ("{column}")',
                )
                for name, table, column in REDUNDANT
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="delivery",
                    name="endpoint",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="deliveries",
                        to="endpoints.endpoint",
                    ),
                ),
                migrations.AlterField(
                    model_name="delivery",
                    name="merchant",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="deliveries",
                        to="endpoints.merchant",
                    ),
                ),
                migrations.AlterField(
                    model_name="event",
                    name="merchant",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="events",
                        to="endpoints.merchant",
                    ),
                ),
            ],
        ),
    ]
