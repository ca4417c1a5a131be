from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields
from tortoise.indexes import Index

COLUMNS = (
    '"cpu_cost", "ram_cost", "pv_cost", "network_cost", "gpu_cost", "load_balancer_cost", '
    '"shared_cost", "external_cost", "total_cost"'
)
SUMS = ", ".join(f'SUM(r.{c.strip()})' for c in COLUMNS.split(","))


class Migration(migrations.Migration):
    """The SYSTEM and DOMAIN breakdowns' pre-aggregate (a team x system daily cube) and the
    team's 30-day cost rollup (teams ordered by cost), both filled from what is stored; the sync
    and the catalog keep them true from here on. The (cost_30d [DESC], slug) indexes serve the
    keyset pages of `teams(orderBy: COST_30D_*)`; as SQL because Index cannot say DESC."""

    dependencies = [('models', '0012_alerts')]

    initial = False

    operations = [
        ops.CreateModel(
            name='TeamSystemDailyCost',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('team_id', fields.UUIDField()),
                ('system_id', fields.UUIDField(null=True)),
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
            options={'table': 'team_system_daily_cost', 'app': 'models', 'indexes': [Index(fields=['team_id', 'day'], name='team_system_daily_team_day_idx'), Index(fields=['system_id', 'day', 'total_cost'], name='team_system_daily_system_day_idx')], 'pk_attr': 'id', 'table_description': "Pre-aggregate of the SYSTEM and DOMAIN breakdowns: the cost of one team's components in"},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='Team',
            name='cost_30d',
            field=fields.FloatField(default=0.0, db_default=0.0),
        ),
        ops.RunSQL(
            [
                f'INSERT INTO "team_system_daily_cost" ("team_id", "system_id", "day", {COLUMNS}) '  # noqa: S608
                f'SELECT c."team_id", c."system_id", r."day", {SUMS} FROM "cost_record" r '
                'JOIN "component" c ON c."id" = r."component_id" '
                'GROUP BY c."team_id", c."system_id", r."day"',
                'UPDATE "team" SET "cost_30d" = COALESCE((SELECT SUM(c."cost_30d") '
                'FROM "component" c WHERE c."team_id" = "team"."id"), 0)',
                'CREATE INDEX "team_cost_desc_idx" ON "team" ("cost_30d" DESC, "slug")',
                'CREATE INDEX "team_cost_asc_idx" ON "team" ("cost_30d", "slug")',
            ],
            reverse_sql=[
                'DROP INDEX "team_cost_desc_idx"',
                'DROP INDEX "team_cost_asc_idx"',
                'DELETE FROM "team_system_daily_cost"',
            ],
        ),
    ]
