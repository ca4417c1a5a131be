from tortoise import migrations
from tortoise.migrations import operations as ops
from orjson import loads
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise import fields

# Every component budget so far is a 30-day budget (the meaning of budget_usd), with the default
# thresholds, in the currency its cost records hold (COST_CURRENCY when they were synced).
COPY_BUDGETS = (
    'INSERT INTO "budget" ("component_id", "amount", "currency", "period", "thresholds", '
    '"created_at", "updated_at") '
    'SELECT c."id", c."budget_usd", COALESCE((SELECT r."currency" FROM "cost_record" r '
    'WHERE r."component_id" = c."id" ORDER BY r."day" DESC LIMIT 1), \'USD\'), '
    "'ROLLING_30_DAYS', '[0.5, 0.8, 1.0]', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP "
    'FROM "component" c WHERE c."budget_usd" IS NOT NULL'
)


class Migration(migrations.Migration):
    """Budgets of components and teams (period, thresholds); component budgets so far become
    ROLLING_30_DAYS rows, and Component.budget_usd stays their mirror."""

    dependencies = [('models', '0010_coverage')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Budget',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('component', fields.OneToOneField('models.Component', source_field='component_id', null=True, db_constraint=True, to_field='id', related_name='budget', on_delete=OnDelete.CASCADE)),
                ('team', fields.OneToOneField('models.Team', source_field='team_id', null=True, db_constraint=True, to_field='id', related_name='budget', on_delete=OnDelete.CASCADE)),
                ('amount', fields.FloatField()),
                ('currency', fields.CharField(max_length=3)),
                ('period', fields.CharField(max_length=16)),
                ('thresholds', fields.JSONField(encoder=JSON_DUMPS, decoder=loads)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'budget', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A budget of one component or one team (exactly one of the two, one budget per subject).'},
            bases=['Model'],
        ),
        ops.RunSQL([COPY_BUDGETS], reverse_sql=['DELETE FROM "budget"']),
    ]
