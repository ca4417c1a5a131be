from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    """Coverage: what OpenCost reported beside the catalog, per source, aggregate and day
    (coverage_daily: mapped, unmapped, __unallocated__, __idle__, __unmounted__) and the unmapped
    keys themselves (unmapped_cost). Empty until the next sync: days synced before stay without
    coverage figures unless re-fetched (`finops-gql sync --backfill DAYS`)."""

    dependencies = [('models', '0009_daily_cost_aggregates')]

    initial = False

    operations = [
        ops.CreateModel(
            name='CoverageDaily',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('source', fields.CharField(default='default', max_length=100)),
                ('aggregate', fields.CharField(max_length=200)),
                ('day', fields.DateField()),
                ('mapped_cost', fields.FloatField(default=0.0)),
                ('unmapped_cost', fields.FloatField(default=0.0)),
                ('unallocated_cost', fields.FloatField(default=0.0)),
                ('idle_cost', fields.FloatField(default=0.0)),
                ('unmounted_cost', fields.FloatField(default=0.0)),
            ],
            options={'table': 'coverage_daily', 'app': 'models', 'unique_together': (('source', 'aggregate', 'day'),), 'indexes': [Index(fields=['day'], name='coverage_daily_day_idx')], 'pk_attr': 'id', 'table_description': "One OpenCost aggregate's view of the cluster on one day, beside the catalog: the sum of the"},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='UnmappedCost',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('source', fields.CharField(default='default', max_length=100)),
                ('aggregate', fields.CharField(max_length=200)),
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
            options={'table': 'unmapped_cost', 'app': 'models', 'unique_together': (('source', 'aggregate', 'day', 'key'),), 'indexes': [Index(fields=['day'], name='unmapped_cost_day_idx')], 'pk_attr': 'id', 'table_description': 'An OpenCost key no component of its aggregate matched, on one day (the detail of'},
            bases=['Model'],
        ),
    ]
