"""Typed per-request GraphQL context: the principal, the services and fresh DataLoaders."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from strawberry.dataloader import DataLoader

from finops_gql.access import Scope
from finops_gql.alerts.conditions import AlertStatus
from finops_gql.auth import Principal
from finops_gql.catalog.service import ComponentFilter, ComponentOrder, Page
from finops_gql.costs.budgets import BudgetStatus
from finops_gql.costs.coverage import CoverageSums
from finops_gql.costs.explorer import Clusters, Dimension, Subject
from finops_gql.costs.forecast import Forecast
from finops_gql.costs.ranges import DayRange, Granularity
from finops_gql.costs.service import CostGroups, CostSeries, DailyCost, TeamSummary
from finops_gql.db.models import Alert, AlertEvent, Component, Domain, System, Team
from finops_gql.errors import ServiceError
from finops_gql.graphql.cost import Cost
from finops_gql.graphql.documents import DocumentGuard
from finops_gql.graphql.execution import no_executor
from finops_gql.ratelimit import RateDecision

if TYPE_CHECKING:
    from finops_gql.graphql.live import Connection
    from finops_gql.services import Services


TeamPageKey = tuple[uuid.UUID, int, str | None, ComponentOrder, ComponentFilter]
PageKey = tuple[uuid.UUID, int, str | None]
# (owner id, first, after, status[, includeSubTeams]): a page of a component's or team's alerts.
ComponentAlertsKey = tuple[uuid.UUID, int, str | None, AlertStatus | None]
TeamAlertsKey = tuple[uuid.UUID, int, str | None, AlertStatus | None, bool]
P = TypeVar("P")


def _pages(
    fetch: Callable[[list[uuid.UUID], int, str | None], Awaitable[dict[uuid.UUID, Page[P]]]],
) -> Callable[[list[PageKey]], Awaitable[list[Page[P] | BaseException]]]:
    """A batch function for pages under many parents: one statement per distinct (first,
    after), so one for a page of parents in practice; bad arguments fail their own fields."""

    async def load(keys: list[PageKey]) -> list[Page[P] | BaseException]:
        pages: dict[tuple[int, str | None], dict[uuid.UUID, Page[P]] | Exception] = {}
        for first, after in dict.fromkeys((first, after) for _, first, after in keys):
            try:
                pages[first, after] = await fetch(
                    [i for i, f, a in keys if (f, a) == (first, after)], first, after
                )
            except ServiceError as exc:
                pages[first, after] = exc
        return [
            found if isinstance(found := pages[f, a], Exception) else found[i] for i, f, a in keys
        ]

    return load


# (team id, range, granularity, includeSubTeams, clusters filter)
TeamSeriesKey = tuple[uuid.UUID, DayRange, Granularity, bool, Clusters]
# (subject id, range, granularity, clusters filter)
SeriesKey = tuple[uuid.UUID, DayRange, Granularity, Clusters]
# (team id, range, groupBy, first, includeSubTeams, clusters filter)
BreakdownKey = tuple[uuid.UUID, DayRange, Dimension, int, bool, Clusters]


def _series(
    fetch: Callable[
        [list[uuid.UUID], DayRange, Granularity, Clusters],
        Awaitable[dict[uuid.UUID, CostSeries]],
    ],
) -> Callable[[list[SeriesKey]], Awaitable[list[CostSeries]]]:
    """A batch function for series of many subjects: one statement per distinct (range,
    granularity, clusters), so one for a page in practice."""

    async def load(keys: list[SeriesKey]) -> list[CostSeries]:
        found: dict[SeriesKey, CostSeries] = {}
        for args in dict.fromkeys(k[1:] for k in keys):
            ids = [k[0] for k in keys if k[1:] == args]
            for i, s in (await fetch(ids, *args)).items():
                found[(i, *args)] = s
        return [found[k] for k in keys]

    return load


R = TypeVar("R")


async def _grouped(
    keys: Sequence[tuple[Any, ...]],
    fetch: Callable[[list[Any], tuple[Any, ...]], Awaitable[Mapping[Any, R]]],
) -> list[R | Exception]:
    """Batch keys (id, *arguments): one fetch per distinct arguments, for all their ids; bad
    arguments fail their own fields only."""
    answers: dict[tuple[Any, ...], Mapping[Any, R] | Exception] = {}
    for args in dict.fromkeys(k[1:] for k in keys):
        try:
            answers[args] = await fetch([k[0] for k in keys if k[1:] == args], args)
        except ServiceError as exc:
            answers[args] = exc
    return [found if isinstance(found := answers[k[1:]], Exception) else found[k[0]] for k in keys]


K = TypeVar("K")
V = TypeVar("V")


class KnownLoader(DataLoader[K, V]):
    """A DataLoader that also answers from rows a statement of this request already read
    (`know`): a page's components and teams. Priming made a future per row whether or not a
    later field asked for it (about 2 us a row, a page of 50 primed 100); a known row becomes a
    primed one only when it is loaded, so the answers are the same and unasked rows cost a dict
    entry."""

    def __init__(self, load_fn: Callable[[list[K]], Awaitable[Sequence[V | BaseException]]]):
        super().__init__(load_fn)
        self.known: dict[K, V] = {}

    def know(self, values: Mapping[K, V]) -> None:
        self.known.update(values)

    def load(self, key: K) -> Awaitable[V]:
        known = self.known
        if known and key in known and self.cache_map.get(key) is None:
            self.prime(key, known[key])
        return super().load(key)


def loaded(loader: DataLoader[K, V], key: K) -> V | None:
    """The value `loader` already holds for `key` (known, primed or loaded), else None: a
    resolver can then answer without an await, which costs the executor a task per list item."""
    future = loader.cache_map.get(key) if loader.cache else None
    if future is None:
        known: dict[K, V] | None = getattr(loader, "known", None)
        return known.get(key) if known is not None else None
    if not future.done() or future.cancelled() or future.exception():
        return None
    return future.result()


@dataclass
class Loaders:
    """Built per request so nothing leaks between users; each batches one SQL query per tick.
    Every one reads through the request's Scope: an invisible row loads as a missing one."""

    services: Services
    scope: Scope
    team: KnownLoader[uuid.UUID, Team | None] = field(init=False)
    component: KnownLoader[uuid.UUID, Component | None] = field(init=False)
    # Keyed by (team id, first, after, order, filters): one page of each team's components.
    team_components: DataLoader[TeamPageKey, Page[Component]] = field(init=False)
    # Keyed by (team id, filters): how many of each team's components match (totalCount).
    team_component_count: DataLoader[tuple[uuid.UUID, ComponentFilter], int] = field(init=False)
    team_summary: DataLoader[uuid.UUID, TeamSummary] = field(init=False)
    _history: dict[int, DataLoader[uuid.UUID, list[DailyCost]]] = field(init=False)
    # Catalog roll-ups: systems, domains, and pages under them keyed by (id, first, after).
    system: DataLoader[uuid.UUID, System | None] = field(init=False)
    domain: DataLoader[uuid.UUID, Domain | None] = field(init=False)
    system_components: DataLoader[PageKey, Page[Component]] = field(init=False)
    team_children: DataLoader[PageKey, Page[Team]] = field(init=False)
    domain_systems: DataLoader[PageKey, Page[System]] = field(init=False)
    # Keyed by (component id, range, granularity): one statement per distinct range/granularity.
    component_series: DataLoader[SeriesKey, CostSeries] = field(init=False)
    # The same for systems and domains (System.cost, Domain.cost).
    system_series: DataLoader[SeriesKey, CostSeries] = field(init=False)
    domain_series: DataLoader[SeriesKey, CostSeries] = field(init=False)
    # Team.costBreakdown: three statements per distinct (range, groupBy, first, includeSubTeams).
    team_breakdown: DataLoader[BreakdownKey, CostGroups] = field(init=False)
    component_clusters: DataLoader[uuid.UUID, list[str]] = field(init=False)
    team_series: DataLoader[TeamSeriesKey, CostSeries] = field(init=False)
    component_alerts: DataLoader[ComponentAlertsKey, Page[Alert]] = field(init=False)
    team_alerts: DataLoader[TeamAlertsKey, Page[Alert]] = field(init=False)
    # Keyed by (alert id, first): the newest events of each alert.
    alert_events: DataLoader[tuple[int, int], list[AlertEvent]] = field(init=False)

    # Budget statuses by component / team id (null without a budget); forecasts keyed by
    # (id, days) and (team id, days, includeSubTeams): one batch per distinct argument.
    component_budget: DataLoader[uuid.UUID, BudgetStatus | None] = field(init=False)
    team_budget: DataLoader[uuid.UUID, BudgetStatus | None] = field(init=False)
    component_forecast: DataLoader[tuple[uuid.UUID, int], Forecast] = field(init=False)
    team_forecast: DataLoader[tuple[uuid.UUID, int, bool], Forecast] = field(init=False)
    # platformCost's coverage sums by range: `coverage` and `unmappedKeys` both need them, and
    # read them once (the service calls it after its scope check).
    coverage_sums: DataLoader[DayRange, CoverageSums] = field(init=False)

    def _lazy(self, name: str, kind: type[DataLoader[Any, Any]], load: Any) -> None:
        """Register loader `name`, made on first use: a request uses two or three of them, and
        making all twenty-odd cost more than its GraphQL execution (a `{ __typename }`)."""
        self._pending[name] = (kind, load)

    def __getattr__(self, name: str) -> Any:
        pending = self.__dict__.get("_pending")
        if pending is None or name not in pending:
            raise AttributeError(name)
        kind, load = pending.pop(name)
        loader = kind(load)
        setattr(self, name, loader)
        return loader

    def __post_init__(self) -> None:
        self._pending: dict[str, tuple[type[DataLoader[Any, Any]], Any]] = {}
        catalog, costs, scope = self.services.catalog, self.services.costs, self.scope
        self._budget_loaders()

        async def teams(ids: list[uuid.UUID]) -> list[Team | None]:
            found = await catalog.teams_by_ids(ids, scope)
            return [found.get(i) for i in ids]

        async def components(ids: list[uuid.UUID]) -> list[Component | None]:
            found = await catalog.components_by_ids(ids, scope)
            return [found.get(i) for i in ids]

        async def team_components(
            keys: list[TeamPageKey],
        ) -> list[Page[Component] | BaseException]:
            # One statement per distinct (first, after, order, filters): one for a page of teams
            # in practice.
            pages: dict[tuple[object, ...], dict[uuid.UUID, Page[Component]] | Exception] = {}
            # A cursor pages one team's list, so a page after a cursor is asked per team.
            for args in dict.fromkeys(k[1:] if k[2] is None else k for k in keys):
                first, after, order, filters = args[-4:]
                teams = [k[0] for k in keys if k[1:] == args] if len(args) == 4 else [args[0]]
                try:
                    pages[args] = await catalog.team_component_pages(
                        teams, first, after, order, filters, scope
                    )
                except ServiceError as exc:  # bad arguments fail their own fields only
                    pages[args] = exc
            return [
                found
                if isinstance(found := pages[k[1:] if k[2] is None else k], Exception)
                else found[k[0]]
                for k in keys
            ]

        async def team_component_count(
            keys: list[tuple[uuid.UUID, ComponentFilter]],
        ) -> list[int]:
            counts: dict[ComponentFilter, dict[uuid.UUID, int]] = {}
            for filters in dict.fromkeys(f for _, f in keys):
                counts[filters] = await catalog.team_component_counts(
                    [t for t, f in keys if f == filters], filters, scope
                )
            return [counts[f][t] for t, f in keys]

        async def summaries(ids: list[uuid.UUID]) -> list[TeamSummary]:
            found = await costs.team_summaries(ids, scope)
            return [found[i] for i in ids]

        async def team_breakdown(keys: list[BreakdownKey]) -> list[CostGroups | Exception]:
            return await _grouped(
                keys,
                lambda ids, args: costs.cost_breakdowns(
                    args[0], args[1], ids, args[2], args[3], scope, args[4]
                ),
            )

        async def team_series(keys: list[TeamSeriesKey]) -> list[CostSeries]:
            found: dict[TeamSeriesKey, CostSeries] = {}
            for chosen, granularity, sub, only in dict.fromkeys(k[1:] for k in keys):
                args = (chosen, granularity, sub, only)
                ids = [k[0] for k in keys if k[1:] == args]
                answers = await costs.team_series(ids, chosen, granularity, sub, scope, only)
                for t, s in answers.items():
                    found[(t, *args)] = s
            return [found[k] for k in keys]

        async def component_clusters(ids: list[uuid.UUID]) -> list[list[str]]:
            found = await costs.component_clusters(ids, scope)
            return [found[i] for i in ids]

        self._lazy(
            "component_series",
            DataLoader,
            _series(lambda ids, r, g, c: costs.component_series(ids, r, g, scope, c)),
        )
        self._lazy(
            "system_series",
            DataLoader,
            _series(lambda ids, r, g, c: costs.subject_series(Subject.SYSTEM, ids, r, g, scope, c)),
        )
        self._lazy(
            "domain_series",
            DataLoader,
            _series(lambda ids, r, g, c: costs.subject_series(Subject.DOMAIN, ids, r, g, scope, c)),
        )
        self._lazy("component_clusters", DataLoader, component_clusters)

        async def coverage_sums(ranges: list[DayRange]) -> list[CoverageSums]:
            return [await costs.read_coverage(r) for r in ranges]

        self._lazy("coverage_sums", DataLoader, coverage_sums)
        self._lazy("team_breakdown", DataLoader, team_breakdown)
        self._lazy("team_series", DataLoader, team_series)
        self._lazy("team", KnownLoader, teams)
        self._lazy("component", KnownLoader, components)
        self._lazy("team_components", DataLoader, team_components)
        self._lazy("team_component_count", DataLoader, team_component_count)
        self._lazy("team_summary", DataLoader, summaries)
        self._history = {}

        async def systems(ids: list[uuid.UUID]) -> list[System | None]:
            found = await catalog.systems_by_ids(ids, scope)
            return [found.get(i) for i in ids]

        async def domains(ids: list[uuid.UUID]) -> list[Domain | None]:
            found = await catalog.domains_by_ids(ids, scope)
            return [found.get(i) for i in ids]

        self._lazy("system", DataLoader, systems)
        self._lazy("domain", DataLoader, domains)
        # Looked up when a batch runs, like the loaders above: some pages build Loaders on
        # services without a catalog.
        self._lazy(
            "system_components",
            DataLoader,
            _pages(
                lambda ids, first, after: catalog.system_component_pages(
                    ids, first, after, scope=scope
                )
            ),
        )
        self._lazy(
            "team_children",
            DataLoader,
            _pages(lambda ids, first, after: catalog.team_children_pages(ids, first, after, scope)),
        )
        self._lazy(
            "domain_systems",
            DataLoader,
            _pages(lambda ids, first, after: catalog.domain_system_pages(ids, first, after, scope)),
        )
        self._alert_loaders()

    def _alert_loaders(self) -> None:
        # Looked up when a batch runs: some pages build Loaders on services without alerts.
        services, scope = self.services, self.scope

        async def component_alerts(keys: list[ComponentAlertsKey]) -> list[Page[Alert] | Exception]:
            return await _grouped(
                keys,
                lambda ids, args: services.alerts.owner_alert_pages(
                    "component_id", ids, args[0], args[1], args[2], scope=scope
                ),
            )

        async def team_alerts(keys: list[TeamAlertsKey]) -> list[Page[Alert] | Exception]:
            return await _grouped(
                keys,
                lambda ids, args: services.alerts.owner_alert_pages(
                    "team_id", ids, args[0], args[1], args[2], args[3], scope=scope
                ),
            )

        async def alert_events(keys: list[tuple[int, int]]) -> list[list[AlertEvent] | Exception]:
            return await _grouped(keys, lambda ids, args: services.alerts.events_of(ids, *args))

        self._lazy("component_alerts", DataLoader, component_alerts)
        self._lazy("team_alerts", DataLoader, team_alerts)
        self._lazy("alert_events", DataLoader, alert_events)

    def _budget_loaders(self) -> None:
        services, scope = self.services, self.scope

        async def component_budgets(ids: list[uuid.UUID]) -> list[BudgetStatus | None]:
            found = await services.budgets.component_statuses(ids)
            return [found[i] for i in ids]

        async def team_budgets(ids: list[uuid.UUID]) -> list[BudgetStatus | None]:
            found = await services.budgets.team_statuses(ids)
            return [found[i] for i in ids]

        async def component_forecasts(keys: list[tuple[uuid.UUID, int]]) -> list[Forecast]:
            found: dict[tuple[uuid.UUID, int], Forecast] = {}
            for days in dict.fromkeys(d for _, d in keys):
                ids = [c for c, d in keys if d == days]
                for c, f in (await services.costs.component_forecasts(ids, days, scope)).items():
                    found[c, days] = f
            return [found[k] for k in keys]

        async def team_forecasts(keys: list[tuple[uuid.UUID, int, bool]]) -> list[Forecast]:
            found: dict[tuple[uuid.UUID, int, bool], Forecast] = {}
            for days, sub in dict.fromkeys((d, s) for _, d, s in keys):
                ids = [t for t, d, s in keys if (d, s) == (days, sub)]
                for t, f in (await services.costs.team_forecasts(ids, days, sub, scope)).items():
                    found[t, days, sub] = f
            return [found[k] for k in keys]

        self._lazy("component_budget", DataLoader, component_budgets)
        self._lazy("team_budget", DataLoader, team_budgets)
        self._lazy("component_forecast", DataLoader, component_forecasts)
        self._lazy("team_forecast", DataLoader, team_forecasts)

    def history(self, limit: int) -> DataLoader[uuid.UUID, list[DailyCost]]:
        """One loader per limit: every component asking for the same limit shares one query."""
        loader = self._history.get(limit)
        if loader is None:
            costs, scope = self.services.costs, self.scope

            async def load(ids: list[uuid.UUID]) -> list[list[DailyCost]]:
                found = await costs.histories(ids, limit, scope)
                return [found[i] for i in ids]

            loader = self._history[limit] = DataLoader(load)
        return loader


@dataclass
class Context:
    services: Services
    principal: Principal
    loaders: Loaders

    @property
    def scope(self) -> Scope:
        """What the principal may see (access.scope_for, resolved once per request): pass it to
        every service call; never filter in a resolver."""
        return self.loaders.scope

    # The app's limit (GRAPHQL_MAX_COST), and the operation's cost, set by the OperationGuard
    # extension before execution and reported in every answer's extensions.
    max_cost: int = 50_000
    cost: Cost | None = None
    documents: DocumentGuard | None = None  # the app's document limits and parse cache
    # Over a WebSocket (graphql-transport-ws) the context lives as long as the connection: these
    # are set for it (graphql/live.py), and stay None over HTTP.
    connection: Connection | None = None
    connection_params: dict[str, object] | None = None  # the connection_init payload
    # The principal's budget after this operation was charged (OperationGuard); None when the
    # limiter is off or Redis did not answer.
    rate: RateDecision | None = None
    # The executor running this operation when it places list fields written as JSON by the
    # database (graphql/rows.py), weakly: set by execution.FastExecutor.
    executor: Callable[[], Any] = no_executor
