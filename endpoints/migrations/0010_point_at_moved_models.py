# The endpoint's foreign keys now name the apps that Merchant, Category and EventType
# moved to. State only: the tables keep their names (Meta.db_table), so no row moves.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0002_adopt_merchants_and_api_credentials'),
        ('catalogue', '0001_initial'),
        ('endpoints', '0009_oauth_client'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='endpoint',
                    name='category',
                    field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='endpoints', to='catalogue.category'),
                ),
                migrations.AlterField(
                    model_name='endpoint',
                    name='merchant',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='endpoints', to='accounts.merchant'),
                ),
                migrations.AlterField(
                    model_name='endpoint',
                    name='event_types',
                    field=models.ManyToManyField(blank=True, related_name='endpoints', to='catalogue.eventtype'),
                ),
            ],
            database_operations=[],
        ),
    ]
