# The inspector and loyalty app models moved here from the endpoints app.
# State only: the tables keep their names (Meta.db_table), so no row moves.

import django.core.validators
import django.db.models.deletion
import django.utils.timezone
import lib.crypto
import lib.signing
import tooling.models
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('accounts', '0002_adopt_merchants_and_api_credentials'),
        ('endpoints', '0009_oauth_client'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='Inspector',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('public_id', models.CharField(default=tooling.models._inspector_id, editable=False, max_length=40, unique=True)),
                        ('name', models.CharField(max_length=100)),
                        ('token', models.CharField(default=tooling.models._inspector_token, editable=False, max_length=64, unique=True)),
                        ('answer', models.CharField(choices=[('200', '200 OK'), ('500', '500 Internal Server Error'), ('410', '410 Gone'), ('slow', 'Slow')], default='200', max_length=10)),
                        ('slow_seconds', models.PositiveIntegerField(default=35, help_text='Slow answer: seconds to wait before answering 200.', validators=[django.core.validators.MinValueValidator(1), django.core.validators.MaxValueValidator(35)])),
                        ('created_at', models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                        ('merchant', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='inspectors', to='accounts.merchant')),
                    ],
                    options={
                        'db_table': 'endpoints_inspector',
                        'ordering': ['-created_at', '-id'],
                    },
                ),
                migrations.CreateModel(
                    name='LoyaltyApp',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('url', models.CharField(max_length=2048, verbose_name='App URL')),
                        ('secret', lib.crypto.EncryptedTextField(default=lib.signing.new_secret)),
                        ('timeout_seconds', models.PositiveIntegerField(default=10, validators=[django.core.validators.MinValueValidator(1), django.core.validators.MaxValueValidator(30)])),
                        ('log_mode', models.CharField(choices=[('full', 'Full'), ('error', 'Error'), ('none', 'None')], default='full', max_length=10)),
                        ('fetch_member_point', models.BooleanField(default=True, verbose_name='Fetch Member Point')),
                        ('order_complete', models.BooleanField(default=True, verbose_name='Order Complete')),
                        ('validate_coupon', models.BooleanField(default=True, verbose_name='Validate Coupon')),
                        ('created_at', models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                        ('merchant', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='loyalty_app', to='accounts.merchant')),
                    ],
                    options={
                        'verbose_name': 'loyalty app',
                        'db_table': 'endpoints_loyaltyapp',
                    },
                ),
                migrations.CreateModel(
                    name='InspectorRequest',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('method', models.CharField(max_length=16)),
                        ('path', models.CharField(max_length=2048)),
                        ('headers', models.JSONField(default=dict)),
                        ('body', models.TextField(blank=True)),
                        ('size', models.PositiveIntegerField(default=0, help_text='Bytes received.')),
                        ('source', models.CharField(blank=True, max_length=64)),
                        ('answered', models.CharField(blank=True, help_text='What it was answered.', max_length=10)),
                        ('signature', models.CharField(choices=[('valid', 'Signature valid'), ('invalid', 'Signature invalid'), ('unsigned', 'Not signed')], default='unsigned', max_length=10)),
                        ('signature_detail', models.CharField(blank=True, max_length=300)),
                        ('received_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('inspector', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='requests', to='tooling.inspector')),
                    ],
                    options={
                        'db_table': 'endpoints_inspectorrequest',
                        'ordering': ['-id'],
                        'indexes': [models.Index(fields=['inspector', '-id'], name='inspector_request_recent')],
                    },
                ),
                migrations.CreateModel(
                    name='LoyaltyCall',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('action', models.CharField(choices=[('fetch-member-point', 'Fetch Member Point'), ('order-complete', 'Order Complete'), ('validate-coupon', 'Validate Coupon')], max_length=30)),
                        ('message_id', models.CharField(max_length=40)),
                        ('url', models.CharField(max_length=2048)),
                        ('request_body', models.TextField(blank=True)),
                        ('response_status', models.PositiveIntegerField(blank=True, null=True)),
                        ('response_body', models.TextField(blank=True)),
                        ('duration_ms', models.PositiveIntegerField(default=0)),
                        ('error', models.CharField(blank=True, max_length=500)),
                        ('succeeded', models.BooleanField(default=False)),
                        ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('merchant', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='loyalty_calls', to='accounts.merchant')),
                    ],
                    options={
                        'db_table': 'endpoints_loyaltycall',
                        'ordering': ['-id'],
                        'indexes': [models.Index(fields=['merchant', '-id'], name='loyalty_call_recent'), models.Index(fields=['created_at'], name='loyalty_call_created')],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
