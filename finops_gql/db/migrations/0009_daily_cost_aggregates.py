from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

COLUMNS = (
    '"cpu_cost", "ram_cost", "pv_cost", "network_cost", "gpu_cost", "load_balancer_cost", '
    '"shared_cost", "external_cost", "total_cost"'
)
SUMS = ", ".join(f'SUM(r.{c.strip()})' for c in COLUMNS.split(","))


class Migration(migrations.Migration):
    """Per-team and platform daily totals, the cost explorer's pre-aggregates, filled from the
    records already stored (the sync and the catalog keep them true from here on)."""

    dependencies = [('models', '0008_component_list_indexes')]

    initial = False

    operations = [
        ops.CreateModel(
            name='PlatformDailyCost',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('day', fields.DateField(unique=True)),
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
            options={'table': 'platform_daily_cost', 'app': 'models', 'pk_attr': 'id', 'table_description': "Pre-aggregate of the range engine: every component's cost on one day, kept like"},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='TeamDailyCost',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('team_id', fields.UUIDField()),
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
            options={'table': 'team_daily_cost', 'app': 'models', 'unique_together': (('team_id', 'day'),), 'pk_attr': 'id', 'table_description': "Pre-aggregate of the range engine: one team's components' cost on one day (the sums of"},
            bases=['Model'],
        ),
        ops.RunSQL(
            [
                f'INSERT INTO "team_daily_cost" ("team_id", "day", {COLUMNS}) '  # noqa: S608
                f'SELECT c."team_id", r."day", {SUMS} FROM "cost_record" r '
                'JOIN "component" c ON c."id" = r."component_id" GROUP BY c."team_id", r."day"',
                f'INSERT INTO "platform_daily_cost" ("day", {COLUMNS}) '  # noqa: S608
                f'SELECT r."day", {SUMS} FROM "cost_record" r GROUP BY r."day"',
            ],
            reverse_sql=['DELETE FROM "team_daily_cost"', 'DELETE FROM "platform_daily_cost"'],
        ),
    ]
