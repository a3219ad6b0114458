# Merchant, ApiKey and OAuthClient moved here from the endpoints app.
# State only: the tables keep their names (Meta.db_table), so no row moves.

import accounts.models
import django.db.models.deletion
import django.utils.timezone
import lib.crypto
import lib.signing
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0001_initial'),
        ('endpoints', '0009_oauth_client'),
        migrations.swappable_dependency(settings.OAUTH2_PROVIDER_APPLICATION_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='Merchant',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('public_id', models.CharField(default=accounts.models._merchant_id, editable=False, max_length=40, unique=True)),
                        ('name', models.CharField(max_length=200)),
                        ('event_sequence', models.BigIntegerField(default=0, editable=False)),
                        ('webhook_secret', lib.crypto.EncryptedTextField(default=lib.signing.new_secret)),
                        ('notification_email', models.EmailField(blank=True, help_text="Where failure warnings go; empty means every member's e-mail.", max_length=254)),
                        ('retention_days', models.PositiveIntegerField(blank=True, help_text='Days to keep delivery logs; empty means the default.', null=True)),
                        ('max_webhooks', models.PositiveIntegerField(blank=True, help_text='Webhooks at most; empty means the default.', null=True)),
                        ('max_api_keys', models.PositiveIntegerField(blank=True, help_text='Active API keys at most; empty means the default.', null=True)),
                        ('max_inspectors', models.PositiveIntegerField(blank=True, help_text='Request inspectors at most; empty means the default.', null=True)),
                        ('max_one_off_per_hour', models.PositiveIntegerField(blank=True, help_text='Events with a one-off webhook_url per hour; empty means the default.', null=True)),
                        ('created_at', models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                    ],
                    options={
                        'db_table': 'endpoints_merchant',
                        'ordering': ['name'],
                    },
                ),
                migrations.CreateModel(
                    name='ApiKey',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('name', models.CharField(max_length=100)),
                        ('prefix', models.CharField(help_text='The first characters, to tell keys apart.', max_length=16)),
                        ('key_hash', models.CharField(editable=False, max_length=64, unique=True)),
                        ('created_at', models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                        ('last_used_at', models.DateTimeField(blank=True, editable=False, null=True)),
                        ('revoked_at', models.DateTimeField(blank=True, null=True)),
                        ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('merchant', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='api_keys', to='accounts.merchant')),
                    ],
                    options={
                        'verbose_name': 'API key',
                        'db_table': 'endpoints_apikey',
                        'ordering': ['-created_at'],
                    },
                ),
                migrations.AlterField(
                    model_name='user',
                    name='merchant',
                    field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='users', to='accounts.merchant'),
                ),
                migrations.CreateModel(
                    name='OAuthClient',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('name', models.CharField(max_length=100)),
                        ('created_at', models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                        ('application', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='merchant_client', to=settings.OAUTH2_PROVIDER_APPLICATION_MODEL)),
                        ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('merchant', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='oauth_clients', to='accounts.merchant')),
                    ],
                    options={
                        'verbose_name': 'OAuth client',
                        'db_table': 'endpoints_oauthclient',
                        'ordering': ['-created_at', '-id'],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
