from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from uuid import uuid4
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    """Catalog roll-ups: Backstage Domain and System, Component.system and the Group tree
    (Team.parent). Every new column is nullable, so existing teams and components stay as they
    are (top-level, in no system) until a catalog import sets them. Foreign keys are ON DELETE
    SET NULL: deleting a team, system or domain never deletes or blocks another row."""
    dependencies = [('models', '0006_unique_opencost_selector')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Domain',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('name', fields.CharField(max_length=200)),
                ('slug', fields.CharField(unique=True, max_length=100)),
                ('owner', fields.ForeignKeyField('models.Team', source_field='owner_id', null=True, db_constraint=True, to_field='id', related_name='domains', on_delete=OnDelete.SET_NULL)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'domain', 'app': 'models', 'pk_attr': 'id', 'table_description': 'Backstage `kind: Domain`: a group of systems (e.g. "commerce").'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='System',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('name', fields.CharField(max_length=200)),
                ('slug', fields.CharField(unique=True, max_length=100)),
                ('domain', fields.ForeignKeyField('models.Domain', source_field='domain_id', null=True, db_constraint=True, to_field='id', related_name='systems', on_delete=OnDelete.SET_NULL)),
                ('owner', fields.ForeignKeyField('models.Team', source_field='owner_id', null=True, db_constraint=True, to_field='id', related_name='systems', on_delete=OnDelete.SET_NULL)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'system', 'app': 'models', 'indexes': [Index(fields=['domain_id', 'slug'], name='system_domain_slug_idx')], 'pk_attr': 'id', 'table_description': 'Backstage `kind: System`: components that make one product (e.g. "shop").'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='Component',
            name='system',
            field=fields.ForeignKeyField('models.System', source_field='system_id', null=True, db_constraint=True, to_field='id', related_name='components', on_delete=OnDelete.SET_NULL),
        ),
        ops.AddIndex(
            model_name='Component',
            index=Index(fields=['system_id', 'name', 'id'], name='component_system_name_idx'),
        ),
        ops.AddField(
            model_name='Team',
            name='parent',
            field=fields.ForeignKeyField('models.Team', source_field='parent_id', null=True, db_constraint=True, to_field='id', related_name='children', on_delete=OnDelete.SET_NULL),
        ),
        ops.AddIndex(
            model_name='Team',
            index=Index(fields=['parent_id', 'slug'], name='team_parent_slug_idx'),
        ),
    ]
