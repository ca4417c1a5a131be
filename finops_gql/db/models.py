"""Tortoise models. Money is stored as double precision: numeric ORDER BY and SUM on SQLite and
PostgreSQL alike (Tortoise keeps DecimalField as TEXT on SQLite, which would sort as strings), and
OpenCost itself only sends floats rounded to 5 decimals."""

from __future__ import annotations

from typing import Any

from tortoise import fields
from tortoise.indexes import Index
from tortoise.models import Model

DEFAULT_AGGREGATE = "label:app"
# Column lengths, which input validation (finops_gql.validation) checks against.
NAME_MAX = 200
SLUG_MAX = 100
AGGREGATE_MAX = 200
KEY_MAX = 253
COVERAGE_KEY_MAX = 1000
CLUSTER_MAX = 63  # an OPENCOST_SOURCES name (config.SOURCE_NAME)


class Team(Model):
    id = fields.UUIDField(primary_key=True)
    name = fields.CharField(max_length=NAME_MAX)
    slug = fields.CharField(max_length=SLUG_MAX, unique=True)
    # The Backstage Group tree. SET NULL: deleting a team makes its sub-teams top-level rather
    # than refusing the delete (the catalog import, which owns the tree, sets it again), and it
    # never cascades into deleting teams. The import and the service refuse cycles.
    parent: fields.ForeignKeyNullableRelation[Team] = fields.ForeignKeyField(
        "models.Team", related_name="children", null=True, on_delete=fields.SET_NULL
    )
    parent_id: str | None
    # Rollup kept true with the components' cost_30d: the sum of the team's OWN components'
    # cost_30d (sub-teams not included), what `teams(orderBy: COST_30D_*)` sorts by. Rewritten by
    # CostService.refresh_rollups and, when a component moves or goes, by
    # explorer.refresh_daily_totals in the same transaction. A database default too, so the
    # column could be added to a table that has rows, and raw INSERTs need not name it.
    cost_30d = fields.FloatField(default=0.0, db_default=0.0)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    components: fields.ReverseRelation[Component]
    children: fields.ReverseRelation[Team]

    class Meta:
        table = "team"
        ordering = ["slug"]
        # Team.children and the subtree walk (catalog.service.team_subtrees) follow parent_id.
        indexes = [Index(fields=("parent_id", "slug"), name="team_parent_slug_idx")]
        # teams(orderBy: COST_30D_DESC / COST_30D_ASC) page by (cost_30d [DESC], slug): indexes
        # created in migration 0010 as SQL, since Index cannot say DESC.


class Component(Model):
    id = fields.UUIDField(primary_key=True)
    name = fields.CharField(max_length=NAME_MAX, db_index=True)
    team: fields.ForeignKeyRelation[Team] = fields.ForeignKeyField(
        "models.Team", related_name="components", on_delete=fields.RESTRICT
    )
    team_id: str
    # Backstage spec.system; SET NULL: deleting a system leaves its components unassigned.
    system: fields.ForeignKeyNullableRelation[System] = fields.ForeignKeyField(
        "models.System", related_name="components", null=True, on_delete=fields.SET_NULL
    )
    system_id: str | None
    budget_usd = fields.FloatField(null=True)
    # How OpenCost identifies this component: the allocation aggregate and the key in its answer.
    opencost_aggregate = fields.CharField(max_length=AGGREGATE_MAX, default=DEFAULT_AGGREGATE)
    opencost_key = fields.CharField(max_length=KEY_MAX, null=True)
    # Rollup kept true by the sync: sum of the last 30 complete days of CostRecord.total_cost,
    # so the team summary and the platform top-N read one indexed column, not 30 rows each.
    cost_30d = fields.FloatField(default=0.0)
    cost_synced_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "component"
        indexes = [
            Index(fields=("cost_30d",), name="component_cost_30d_idx"),
            Index(fields=("team_id", "cost_30d"), name="component_team_cost_idx"),
            # The top-N, team summaries and component lists use (cost_30d DESC, name, id),
            # (cost_30d, name, id), their (team_id, ...) twins and (team_id, name, id), created
            # in migrations 0003 and 0008 as SQL, since Index cannot say DESC.
            # Keyset pagination of components (GraphQL `components`) orders by (name, id).
            Index(fields=("name", "id"), name="component_name_id_idx"),
            # System.components pages by (name, id) within one system.
            Index(fields=("system_id", "name", "id"), name="component_system_name_idx"),
            # One component per OpenCost selector: (opencost_aggregate, COALESCE(opencost_key,
            # name)) is unique, an expression index created by migration 0006 as SQL.
        ]

    @property
    def selector_key(self) -> str:
        return self.opencost_key or self.name


class Domain(Model):
    """Backstage `kind: Domain`: a group of systems (e.g. "commerce")."""

    id = fields.UUIDField(primary_key=True)
    name = fields.CharField(max_length=NAME_MAX)
    slug = fields.CharField(max_length=SLUG_MAX, unique=True)
    owner: fields.ForeignKeyNullableRelation[Team] = fields.ForeignKeyField(
        "models.Team", related_name="domains", null=True, on_delete=fields.SET_NULL
    )
    owner_id: str | None
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    systems: fields.ReverseRelation[System]

    class Meta:
        table = "domain"
        ordering = ["slug"]


class System(Model):
    """Backstage `kind: System`: components that make one product (e.g. "shop")."""

    id = fields.UUIDField(primary_key=True)
    name = fields.CharField(max_length=NAME_MAX)
    slug = fields.CharField(max_length=SLUG_MAX, unique=True)
    domain: fields.ForeignKeyNullableRelation[Domain] = fields.ForeignKeyField(
        "models.Domain", related_name="systems", null=True, on_delete=fields.SET_NULL
    )
    domain_id: str | None
    owner: fields.ForeignKeyNullableRelation[Team] = fields.ForeignKeyField(
        "models.Team", related_name="systems", null=True, on_delete=fields.SET_NULL
    )
    owner_id: str | None
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    components: fields.ReverseRelation[Component]

    class Meta:
        table = "system"
        ordering = ["slug"]
        # Domain.systems pages by slug within one domain.
        indexes = [Index(fields=("domain_id", "slug"), name="system_domain_slug_idx")]


class CostRecord(Model):
    """One component's cost in one cluster (OpenCost source) for one complete UTC day. Every
    figure sums the clusters unless a cluster filter or dimension asks otherwise; the daily
    pre-aggregates below hold the all-cluster sums."""

    id = fields.BigIntField(primary_key=True)
    component: fields.ForeignKeyRelation[Component] = fields.ForeignKeyField(
        "models.Component", related_name="cost_records", on_delete=fields.CASCADE
    )
    component_id: str
    # The OpenCost source's name (OPENCOST_SOURCES; `default` for OPENCOST_URL and for the
    # records of before several sources, migration 0016).
    cluster = fields.CharField(max_length=CLUSTER_MAX, default="default", db_default="default")
    day = fields.DateField()
    cpu_cost = fields.FloatField(default=0.0)
    ram_cost = fields.FloatField(default=0.0)
    pv_cost = fields.FloatField(default=0.0)
    network_cost = fields.FloatField(default=0.0)
    gpu_cost = fields.FloatField(default=0.0)
    load_balancer_cost = fields.FloatField(default=0.0)
    shared_cost = fields.FloatField(default=0.0)
    external_cost = fields.FloatField(default=0.0)
    total_cost = fields.FloatField(default=0.0)
    currency = fields.CharField(max_length=3)
    synced_at = fields.DatetimeField()

    class Meta:
        table = "cost_record"
        # Unique per (component, cluster, day), in (component, day, cluster) order: the index
        # still serves "last N days of one component" and a component's range in day order
        # (a cluster's rows of a day sit together, summed as they are read).
        unique_together = (("component", "day", "cluster"),)
        indexes = [Index(fields=("day",), name="cost_record_day_idx")]


class DailyMoney(Model):
    """The money columns of the daily pre-aggregates: cost_record's, summed."""

    cpu_cost = fields.FloatField(default=0.0)
    ram_cost = fields.FloatField(default=0.0)
    pv_cost = fields.FloatField(default=0.0)
    network_cost = fields.FloatField(default=0.0)
    gpu_cost = fields.FloatField(default=0.0)
    load_balancer_cost = fields.FloatField(default=0.0)
    shared_cost = fields.FloatField(default=0.0)
    external_cost = fields.FloatField(default=0.0)
    total_cost = fields.FloatField(default=0.0)

    class Meta:
        abstract = True


class TeamDailyCost(DailyMoney):
    """Pre-aggregate of the range engine: one team's components' cost on one day (the sums of
    cost_record by the component's current team). Rewritten in the same transaction as every
    change that moves cost: the sync's write, a component moved to another team or deleted, a
    catalog import (costs/explorer.py refresh_daily_totals), so it is never stale."""

    id = fields.BigIntField(primary_key=True)
    team_id = fields.UUIDField()
    day = fields.DateField()

    class Meta:
        table = "team_daily_cost"
        # The unique index serves the read: a team's days in a range.
        unique_together = (("team_id", "day"),)


class PlatformDailyCost(DailyMoney):
    """Pre-aggregate of the range engine: every component's cost on one day, kept like
    TeamDailyCost (a move between teams leaves it alone; a deletion does not)."""

    id = fields.BigIntField(primary_key=True)
    day = fields.DateField(unique=True)

    class Meta:
        table = "platform_daily_cost"


class TeamSystemDailyCost(DailyMoney):
    """Pre-aggregate of the SYSTEM and DOMAIN breakdowns: the cost of one team's components in
    one system (system_id NULL: in none) on one day. A team x system cube: the platform's
    breakdown sums it over teams, a team's reads its own rows, DOMAIN joins system for its
    domain (so moving a system to another domain rewrites nothing). Its size is the number of
    (team, system) pairs with cost times the days, at most cost_record's and in practice about
    systems x days, since a system's components mostly share an owner. Rewritten with
    TeamDailyCost, for the same teams and days, in the same transaction (explorer.
    refresh_daily_totals): the sync's write, a component moved to another team or system (the
    catalog import), deleted. No unique index: NULL system ids are distinct to both databases;
    the rewrite (DELETE then INSERT ... GROUP BY) keeps one row per (team, system, day)."""

    id = fields.BigIntField(primary_key=True)
    team_id = fields.UUIDField()
    system_id = fields.UUIDField(null=True)
    day = fields.DateField()

    class Meta:
        table = "team_system_daily_cost"
        indexes = [
            # A team's (or a subtree's) rows in a range.
            Index(fields=("team_id", "day"), name="team_system_daily_team_day_idx"),
            # A system's (or a domain's systems') rows in a range (System.cost, Domain.cost),
            # and, covering, the platform's SYSTEM breakdown: read in system order, so it is
            # grouped as it is read, without touching the table. A (day) index measured 4x
            # slower on SQLite (a table lookup per row, then a sort to group).
            Index(
                fields=("system_id", "day", "total_cost"),
                name="team_system_daily_system_day_idx",
            ),
        ]


class SystemDailyCost(DailyMoney):
    """Pre-aggregate of the platform's SYSTEM and DOMAIN breakdowns: every component's cost in
    one system (system_id NULL: in none) on one day, whichever team owns it. It is
    team_system_daily_cost summed over teams: one row per system and day instead of one per
    (team, system) pair and day, so a 30-day breakdown with its previous 30 days reads systems x
    60 rows. Rewritten from the cube for the same days and the systems it touched, in the same
    transaction (explorer.refresh_daily_totals), so it is never stale. A scoped principal's
    breakdown still reads the cube (its rows carry the owning team)."""

    id = fields.BigIntField(primary_key=True)
    system_id = fields.UUIDField(null=True)
    day = fields.DateField()

    class Meta:
        table = "system_daily_cost"
        indexes = [
            # Covering, in system order: the breakdown groups as it reads, without the table
            # (SQLite); a system's days in a range.
            Index(fields=("system_id", "day", "total_cost"), name="system_daily_system_day_idx"),
        ]


class CoverageDaily(Model):
    """One OpenCost aggregate's view of the cluster on one day, beside the catalog: the sum of the
    keys a component of that aggregate matched (mapped), of those none matched (unmapped, listed
    in unmapped_cost) and OpenCost's own entries `__unallocated__`, `__idle__` and
    `__unmounted__`, each its own column. Their sum is the cluster's cost as OpenCost reported it,
    exactly, even after components are deleted.

    Written by the sync in the transaction of the same aggregate's cost records (its day span
    replaced, so a re-sync is idempotent); dropped with the same retention. The coverage figures
    (costs/coverage.py) read it: one row per aggregate and day, so any range is a few hundred."""

    id = fields.BigIntField(primary_key=True)
    # One OpenCost instance today; several (clusters) later, like sync_progress.
    source = fields.CharField(max_length=100, default="default")
    aggregate = fields.CharField(max_length=AGGREGATE_MAX)
    day = fields.DateField()
    mapped_cost = fields.FloatField(default=0.0)
    unmapped_cost = fields.FloatField(default=0.0)
    unallocated_cost = fields.FloatField(default=0.0)
    idle_cost = fields.FloatField(default=0.0)
    unmounted_cost = fields.FloatField(default=0.0)

    class Meta:
        table = "coverage_daily"
        # The unique index serves the sync's "replace this aggregate's days" too.
        unique_together = (("source", "aggregate", "day"),)
        indexes = [Index(fields=("day",), name="coverage_daily_day_idx")]


class UnmappedCost(Model):
    """An OpenCost key no component of its aggregate matched, on one day (the detail of
    CoverageDaily.unmapped_cost, kept with it): the labels to fix or components to add."""

    id = fields.BigIntField(primary_key=True)
    source = fields.CharField(max_length=100, default="default")
    aggregate = fields.CharField(max_length=AGGREGATE_MAX)
    # The normalized OpenCost key (the bare label value). Longer than any catalog key may be (pod
    # or controller names), so its own bound: the sync cuts past it.
    key = fields.CharField(max_length=COVERAGE_KEY_MAX)
    day = fields.DateField()
    cpu_cost = fields.FloatField(default=0.0)
    ram_cost = fields.FloatField(default=0.0)
    pv_cost = fields.FloatField(default=0.0)
    network_cost = fields.FloatField(default=0.0)
    gpu_cost = fields.FloatField(default=0.0)
    load_balancer_cost = fields.FloatField(default=0.0)
    shared_cost = fields.FloatField(default=0.0)
    external_cost = fields.FloatField(default=0.0)
    total_cost = fields.FloatField(default=0.0)

    class Meta:
        table = "unmapped_cost"
        # Serves the sync's replace and unmappedKeys' lookup of one view's days alike.
        unique_together = (("source", "aggregate", "day", "key"),)
        indexes = [Index(fields=("day",), name="unmapped_cost_day_idx")]


class Budget(Model):
    """A budget of one component or one team (exactly one of the two, one budget per subject).
    A team's covers its components and its sub-teams' (costs/budgets.py). A component's
    ROLLING_30_DAYS budget is mirrored in Component.budget_usd (the API's budgetUsd), kept in
    the same transaction by every write."""

    id = fields.BigIntField(primary_key=True)
    component: fields.OneToOneNullableRelation[Component] = fields.OneToOneField(
        "models.Component", related_name="budget", null=True, on_delete=fields.CASCADE
    )
    component_id: str | None
    team: fields.OneToOneNullableRelation[Team] = fields.OneToOneField(
        "models.Team", related_name="budget", null=True, on_delete=fields.CASCADE
    )
    team_id: str | None
    amount = fields.FloatField()
    currency = fields.CharField(max_length=3)
    period = fields.CharField(max_length=16)  # ROLLING_30_DAYS | MONTHLY
    # Ratios of the amount, ascending: [0.5, 0.8, 1.0] by default.
    thresholds: fields.JSONField[list[float]] = fields.JSONField()
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "budget"


class SyncRun(Model):
    id = fields.BigIntField(primary_key=True)
    started_at = fields.DatetimeField()
    finished_at = fields.DatetimeField(null=True)
    status = fields.CharField(max_length=16)  # running | succeeded | partial | failed
    trigger = fields.CharField(max_length=16)  # cron | manual | cli
    first_day = fields.DateField(null=True)
    last_day = fields.DateField(null=True)
    days = fields.IntField(default=0)
    components = fields.IntField(default=0)
    records = fields.IntField(default=0)
    opencost_requests = fields.IntField(default=0)
    error = fields.TextField(null=True)
    # The lease: a running sync renews this every SYNC_HEARTBEAT_SECONDS; a running row whose
    # heartbeat is older than SYNC_LEASE_SECONDS belongs to a dead process and is abandoned.
    heartbeat_at = fields.DatetimeField(null=True)
    # Aggregates whose OpenCost request failed after retries, as a JSON list of
    # {"aggregate", "error", "attempts", "firstDay", "lastDay"}; their days are fetched next run.
    failed_aggregates: fields.JSONField[list[dict[str, Any]] | None] = fields.JSONField(null=True)

    class Meta:
        table = "sync_run"
        ordering = ["-started_at"]


class SyncProgress(Model):
    """The last complete day the sync stored for one OpenCost aggregate and source.

    Each aggregate resumes from its own day, so one failing aggregate does not make the others
    re-fetch."""

    id = fields.BigIntField(primary_key=True)
    # One OpenCost instance today; several (clusters) later, each with its own progress.
    source = fields.CharField(max_length=100, default="default")
    aggregate = fields.CharField(max_length=200)
    last_day = fields.DateField()
    updated_at = fields.DatetimeField(null=True)

    class Meta:
        table = "sync_progress"
        unique_together = (("source", "aggregate"),)


class Alert(Model):
    """A condition someone should act on: a budget threshold crossed or forecast to be, a cost
    anomaly, a failed sync. Deduplicated: at most one unresolved alert per (kind, subject,
    period), a partial unique index created by migration 0012 as SQL (Index cannot say WHERE).

    The lifecycle (alerts/service.py): OPEN -> ACKNOWLEDGED | SNOOZED (until snoozed_until, then
    OPEN again if the condition still holds) -> RESOLVED (the condition cleared, or a person);
    every change is an AlertEvent."""

    id = fields.BigIntField(primary_key=True)
    kind = fields.CharField(max_length=32)  # BUDGET_THRESHOLD | BUDGET_FORECAST | COST_ANOMALY ...
    status = fields.CharField(max_length=16)  # OPEN | ACKNOWLEDGED | SNOOZED | RESOLVED
    # What the alert is about ("component:<uuid>", "team:<uuid>", "sync:<source>") and which
    # period of it (a day, a budget period and threshold, ...): the dedup key with the kind.
    subject = fields.CharField(max_length=200)
    period = fields.CharField(max_length=100)
    # The owning team (who may act on it) and the component, when there is one. Not foreign
    # keys: an alert outlives a deleted component (its condition clears, the history stays).
    team_id = fields.UUIDField(null=True)
    component_id = fields.UUIDField(null=True)
    title = fields.CharField(max_length=500)
    details: fields.JSONField[dict[str, Any]] = fields.JSONField(default=dict)
    raised_at = fields.DatetimeField()
    updated_at = fields.DatetimeField()
    last_seen_at = fields.DatetimeField()  # the last evaluation that found the condition true
    snoozed_until = fields.DatetimeField(null=True)
    acknowledged_at = fields.DatetimeField(null=True)
    acknowledged_by = fields.CharField(max_length=200, null=True)
    resolved_at = fields.DatetimeField(null=True)
    resolved_by = fields.CharField(max_length=200, null=True)  # a subject, or "system"
    # ALERT_WEBHOOK_URL delivery: null (no webhook), pending, delivered or failed.
    webhook_status = fields.CharField(max_length=16, null=True)
    webhook_attempts = fields.IntField(default=0)
    webhook_delivered_at = fields.DatetimeField(null=True)
    webhook_error = fields.TextField(null=True)

    events: fields.ReverseRelation[AlertEvent]

    class Meta:
        table = "alert"
        # Lists page newest first by id, filtered by status, kind, team or component.
        indexes = [
            Index(fields=("status", "id"), name="alert_status_id_idx"),
            Index(fields=("kind", "id"), name="alert_kind_id_idx"),
            Index(fields=("team_id", "id"), name="alert_team_id_idx"),
            Index(fields=("component_id", "id"), name="alert_component_id_idx"),
        ]


class AlertEvent(Model):
    """One change of an alert: who (a token's subject, or "system" for the evaluator), when,
    from which status to which."""

    id = fields.BigIntField(primary_key=True)
    alert: fields.ForeignKeyRelation[Alert] = fields.ForeignKeyField(
        "models.Alert", related_name="events", on_delete=fields.CASCADE
    )
    alert_id: int
    at = fields.DatetimeField()
    actor = fields.CharField(max_length=200)
    action = fields.CharField(max_length=32)  # raised | acknowledged | snoozed | reopened | ...
    from_status = fields.CharField(max_length=16, null=True)
    to_status = fields.CharField(max_length=16)
    note = fields.TextField(null=True)

    class Meta:
        table = "alert_event"
        indexes = [Index(fields=("alert_id", "id"), name="alert_event_alert_idx")]


class DataVersion(Model):
    """One row (id 1) whose `version` every write that can change an answer increments, in the
    writer's own transaction (db/dataversion.py): the answer cache's invalidation, seen by every
    API replica that reads the database."""

    id = fields.IntField(primary_key=True)
    version = fields.BigIntField(default=0)

    class Meta:
        table = "data_version"
