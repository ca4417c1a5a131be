from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields
from tortoise.indexes import Index
from tortoise.migrations.constraints import UniqueConstraint

class DropRecordKey(ops.RemoveConstraint):
    """Drop cost_record's (component, day) key. On SQLite that key is the table's own inline
    UNIQUE, which no statement drops: the table is rebuilt (Tortoise's remake, which keeps every
    row), and its (day) index, gone with the old table, created again."""

    async def database_forward(self, app_label, old_state, new_state, state_editor=None):  # type: ignore[no-untyped-def]
        if state_editor is not None and state_editor.DIALECT == "sqlite":
            model = new_state.apps.get_model(f"{app_label}.{self.model_name}")
            await state_editor._remake_table(model)
            await state_editor._run_sql(
                'CREATE INDEX "cost_record_day_idx" ON "cost_record" ("day")'
            )
            return
        await super().database_forward(app_label, old_state, new_state, state_editor)


class Migration(migrations.Migration):
    """Several OpenCost sources: cost_record gains its cluster (the source's name). Every
    existing record was synced from the one OPENCOST_URL and is kept, assigned to `default`
    (the column's default, also what OPENCOST_URL alone is named from now on). The unique key
    becomes (component, day, cluster): in that order it still serves a component's days, newest
    first or in a range, as (component, day) did. The daily pre-aggregates keep their all-cluster
    sums: nothing to rewrite."""
    dependencies = [('models', '0015_system_daily_cost')]

    initial = False

    operations = [
        ops.AddField(
            model_name='CostRecord',
            name='cluster',
            field=fields.CharField(default='default', db_default='default', max_length=63),
        ),
        DropRecordKey(
            model_name='CostRecord',
            name=None,
            fields=['component', 'day'],
        ),
        ops.AddConstraint(
            model_name='CostRecord',
            constraint=UniqueConstraint(fields=('component', 'day', 'cluster'), name=None),
        ),
        ops.AlterModelOptions(
            name='CostRecord',
            options={'table': 'cost_record', 'app': 'models', 'unique_together': (('component', 'day', 'cluster'),), 'indexes': [Index(fields=['day'], name='cost_record_day_idx')], 'pk_attr': 'id', 'table_description': "One component's cost in one cluster (OpenCost source) for one complete UTC day. Every"},
        ),
    ]
