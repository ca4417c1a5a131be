from tortoise import migrations
from tortoise.migrations import operations as ops
from orjson import loads
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    """Alerts and their history. At most one unresolved alert per (kind, subject, period): a
    partial unique index (SQLite and PostgreSQL alike), so two evaluations racing each other
    cannot raise the same alert twice."""

    dependencies = [('models', '0011_budgets')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Alert',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('kind', fields.CharField(max_length=32)),
                ('status', fields.CharField(max_length=16)),
                ('subject', fields.CharField(max_length=200)),
                ('period', fields.CharField(max_length=100)),
                ('team_id', fields.UUIDField(null=True)),
                ('component_id', fields.UUIDField(null=True)),
                ('title', fields.CharField(max_length=500)),
                ('details', fields.JSONField(default=dict, encoder=JSON_DUMPS, decoder=loads)),
                ('raised_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('updated_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('last_seen_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('snoozed_until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('acknowledged_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('acknowledged_by', fields.CharField(null=True, max_length=200)),
                ('resolved_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('resolved_by', fields.CharField(null=True, max_length=200)),
                ('webhook_status', fields.CharField(null=True, max_length=16)),
                ('webhook_attempts', fields.IntField(default=0)),
                ('webhook_delivered_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('webhook_error', fields.TextField(null=True, unique=False)),
            ],
            options={'table': 'alert', 'app': 'models', 'indexes': [Index(fields=['status', 'id'], name='alert_status_id_idx'), Index(fields=['kind', 'id'], name='alert_kind_id_idx'), Index(fields=['team_id', 'id'], name='alert_team_id_idx'), Index(fields=['component_id', 'id'], name='alert_component_id_idx')], 'pk_attr': 'id', 'table_description': 'A condition someone should act on: a budget threshold crossed or forecast to be, a cost'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='AlertEvent',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('alert', fields.ForeignKeyField('models.Alert', source_field='alert_id', db_constraint=True, to_field='id', related_name='events', on_delete=OnDelete.CASCADE)),
                ('at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('actor', fields.CharField(max_length=200)),
                ('action', fields.CharField(max_length=32)),
                ('from_status', fields.CharField(null=True, max_length=16)),
                ('to_status', fields.CharField(max_length=16)),
                ('note', fields.TextField(null=True, unique=False)),
            ],
            options={'table': 'alert_event', 'app': 'models', 'indexes': [Index(fields=['alert_id', 'id'], name='alert_event_alert_idx')], 'pk_attr': 'id', 'table_description': 'One change of an alert: who (a token\'s subject, or "system" for the evaluator), when,'},
            bases=['Model'],
        ),
        ops.RunSQL(
            [
                'CREATE UNIQUE INDEX "alert_one_unresolved" ON "alert" ("kind", "subject", "period") '
                "WHERE \"status\" <> 'RESOLVED'",
            ],
            reverse_sql=['DROP INDEX "alert_one_unresolved"'],
        ),
    ]
