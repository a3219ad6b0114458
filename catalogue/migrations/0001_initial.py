# Category and EventType moved here from the endpoints app (whose migration 0002 seeded
# them). State only: the tables keep their names (Meta.db_table), so no row moves.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('endpoints', '0009_oauth_client'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='Category',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('slug', models.SlugField(unique=True)),
                        ('name', models.CharField(max_length=100)),
                        ('description', models.CharField(blank=True, max_length=300)),
                        ('position', models.PositiveIntegerField(default=0)),
                    ],
                    options={
                        'verbose_name_plural': 'categories',
                        'db_table': 'endpoints_category',
                        'ordering': ['position', 'name'],
                    },
                ),
                migrations.CreateModel(
                    name='EventType',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('name', models.CharField(max_length=100, unique=True)),
                        ('description', models.CharField(blank=True, max_length=300)),
                        ('source', models.CharField(blank=True, help_text='Where the type comes from.', max_length=50)),
                        ('sample', models.JSONField(blank=True, default=dict, help_text='A sample `data` payload.')),
                        ('is_active', models.BooleanField(default=True)),
                        ('category', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='event_types', to='catalogue.category')),
                    ],
                    options={
                        'db_table': 'endpoints_eventtype',
                        'ordering': ['category__position', 'name'],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
