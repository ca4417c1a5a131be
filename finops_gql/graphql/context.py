"""Typed per-request GraphQL context: the principal, the services and fresh DataLoaders."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from strawberry.dataloader import DataLoader

from finops_gql.auth import Principal
from finops_gql.catalog.service import ComponentFilter, ComponentOrder, Page
from finops_gql.costs.service import DailyCost, TeamSummary
from finops_gql.db.models import Component, Team
from finops_gql.errors import ServiceError
from finops_gql.graphql.cost import Cost
from finops_gql.graphql.documents import DocumentGuard

if TYPE_CHECKING:
    from finops_gql.services import Services


TeamPageKey = tuple[uuid.UUID, int, str | None, ComponentOrder, ComponentFilter]


@dataclass
class Loaders:
    """Built per request so nothing leaks between users; each batches one SQL query per tick."""

    services: Services
    team: DataLoader[uuid.UUID, Team | None] = field(init=False)
    component: DataLoader[uuid.UUID, Component | None] = field(init=False)
    # Keyed by (team id, first, after, order, filters): one page of each team's components.
    team_components: DataLoader[TeamPageKey, Page[Component]] = field(init=False)
    # Keyed by (team id, filters): how many of each team's components match (totalCount).
    team_component_count: DataLoader[tuple[uuid.UUID, ComponentFilter], int] = field(init=False)
    team_summary: DataLoader[uuid.UUID, TeamSummary] = field(init=False)
    _history: dict[int, DataLoader[uuid.UUID, list[DailyCost]]] = field(init=False)

    def __post_init__(self) -> None:
        catalog, costs = self.services.catalog, self.services.costs

        async def teams(ids: list[uuid.UUID]) -> list[Team | None]:
            found = await catalog.teams_by_ids(ids)
            return [found.get(i) for i in ids]

        async def components(ids: list[uuid.UUID]) -> list[Component | None]:
            found = await catalog.components_by_ids(ids)
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
                        teams, first, after, order, filters
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
                    [t for t, f in keys if f == filters], filters
                )
            return [counts[f][t] for t, f in keys]

        async def summaries(ids: list[uuid.UUID]) -> list[TeamSummary]:
            found = await costs.team_summaries(ids)
            return [found[i] for i in ids]

        self.team = DataLoader(teams)
        self.component = DataLoader(components)
        self.team_components = DataLoader(team_components)
        self.team_component_count = DataLoader(team_component_count)
        self.team_summary = DataLoader(summaries)
        self._history = {}

    def history(self, limit: int) -> DataLoader[uuid.UUID, list[DailyCost]]:
        """One loader per limit: every component asking for the same limit shares one query."""
        loader = self._history.get(limit)
        if loader is None:
            costs = self.services.costs

            async def load(ids: list[uuid.UUID]) -> list[list[DailyCost]]:
                found = await costs.histories(ids, limit)
                return [found[i] for i in ids]

            loader = self._history[limit] = DataLoader(load)
        return loader


@dataclass
class Context:
    services: Services
    principal: Principal
    loaders: Loaders
    # The app's limit (GRAPHQL_MAX_COST), and the operation's cost, set by the QueryCost
    # extension before execution and reported in every answer's extensions.
    max_cost: int = 50_000
    cost: Cost | None = None
    documents: DocumentGuard | None = None  # the app's document limits and parse cache
