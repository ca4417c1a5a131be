from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields


class Migration(migrations.Migration):
    """The data version (one row, id 1): every write that can change an answer increments it in
    its own transaction; the GraphQL answer cache keys its entries by it (answercache.py)."""

    dependencies = [('models', '0013_team_system_and_team_cost')]

    initial = False

    operations = [
        ops.CreateModel(
            name='DataVersion',
            fields=[
                ('id', fields.IntField(primary_key=True, unique=True, db_index=True)),
                ('version', fields.BigIntField(default=0)),
            ],
            options={'table': 'data_version', 'app': 'models', 'pk_attr': 'id', 'table_description': 'One row (id 1) whose `version` every write that can change an answer increments, in the'},
            bases=['Model'],
        ),
        ops.RunSQL(
            ['INSERT INTO "data_version" ("id", "version") VALUES (1, 0)'],
            reverse_sql=['DELETE FROM "data_version"'],
        ),
    ]
