# Foreign keys to the models that left the endpoints app now name their new apps.
# State only: the tables keep their names (Meta.db_table), so no row moves.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0002_adopt_merchants_and_api_credentials'),
        ('catalogue', '0001_initial'),
        ('deliveries', '0008_claims_use_the_endpoint_due_index'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='delivery',
                    name='merchant',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='deliveries', to='accounts.merchant'),
                ),
                migrations.AlterField(
                    model_name='event',
                    name='event_type',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='events', to='catalogue.eventtype'),
                ),
                migrations.AlterField(
                    model_name='event',
                    name='merchant',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='events', to='accounts.merchant'),
                ),
                migrations.AlterField(
                    model_name='idempotencykey',
                    name='merchant',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='idempotency_keys', to='accounts.merchant'),
                ),
            ],
            database_operations=[],
        ),
    ]
