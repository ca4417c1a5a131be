from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    """Coverage: what OpenCost reported beyond the catalog (unmapped keys, __unallocated__,
    __idle__, __unmounted__) per source, aggregate and day. Empty until the next sync: days synced
    before stay without coverage figures unless re-fetched (`finops-gql sync --backfill DAYS`)."""

    dependencies = [('models', '0009_daily_cost_aggregates')]

    initial = False

    operations = [
        ops.CreateModel(
            name='CoverageCost',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('source', fields.CharField(default='default', max_length=100)),
                ('aggregate', fields.CharField(max_length=200)),
                ('kind', fields.CharField(max_length=16)),
                ('key', fields.CharField(max_length=1000)),
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
            ],
            options={'table': 'coverage_cost', 'app': 'models', 'unique_together': (('source', 'aggregate', 'day', 'kind', 'key'),), 'indexes': [Index(fields=['day', 'kind'], name='coverage_cost_day_kind_idx')], 'pk_attr': 'id', 'table_description': "What OpenCost reported on one day in one aggregate's view, beyond the catalog's records:"},
            bases=['Model'],
        ),
    ]
