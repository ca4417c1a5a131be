from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from uuid import uuid4
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name='SyncRun',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('started_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('finished_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('status', fields.CharField(max_length=16)),
                ('trigger', fields.CharField(max_length=16)),
                ('first_day', fields.DateField(null=True)),
                ('last_day', fields.DateField(null=True)),
                ('days', fields.IntField(default=0)),
                ('components', fields.IntField(default=0)),
                ('records', fields.IntField(default=0)),
                ('opencost_requests', fields.IntField(default=0)),
                ('error', fields.TextField(null=True, unique=False)),
            ],
            options={'table': 'sync_run', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Team',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('name', fields.CharField(max_length=200)),
                ('slug', fields.CharField(unique=True, max_length=100)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'team', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Component',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('name', fields.CharField(db_index=True, max_length=200)),
                ('team', fields.ForeignKeyField('models.Team', source_field='team_id', db_constraint=True, to_field='id', related_name='components', on_delete=OnDelete.RESTRICT)),
                ('budget_usd', fields.FloatField(null=True)),
                ('opencost_aggregate', fields.CharField(default='label:app', max_length=200)),
                ('opencost_key', fields.CharField(null=True, max_length=253)),
                ('cost_30d', fields.FloatField(default=0.0)),
                ('cost_synced_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'component', 'app': 'models', 'indexes': [Index(fields=['cost_30d'], name='component_cost_30d_idx'), Index(fields=['team_id', 'cost_30d'], name='component_team_cost_idx')], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='CostRecord',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('component', fields.ForeignKeyField('models.Component', source_field='component_id', db_constraint=True, to_field='id', related_name='cost_records', on_delete=OnDelete.CASCADE)),
                ('day', fields.DateField()),
                ('cpu_cost', fields.FloatField(default=0.0)),
                ('ram_cost', fields.FloatField(default=0.0)),
                ('pv_cost', fields.FloatField(default=0.0)),
                ('network_cost', fields.FloatField(default=0.0)),
                ('gpu_cost', fields.FloatField(default=0.0)),
                ('load_balancer_cost', fields.FloatField(default=0.0)),
                ('shared_cost', fields.FloatField(default=0.0)),
                ('external_cost', fields.FloatField(default=0.0)),
                ('total_cost', fields.FloatField(default=0.0)),
                ('currency', fields.CharField(max_length=3)),
                ('synced_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'cost_record', 'app': 'models', 'unique_together': (('component', 'day'),), 'indexes': [Index(fields=['day'], name='cost_record_day_idx')], 'pk_attr': 'id', 'table_description': "One component's cost for one complete UTC day."},
            bases=['Model'],
        ),
    ]
