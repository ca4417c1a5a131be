"""Who sees what: `scope_for` is THE authorization function, and `Scope` what it decides.

AUTHZ_MODE=open (the default): every authenticated principal sees everything, as before.
AUTHZ_MODE=team: a principal sees the teams its token names (JWT_TEAMS_CLAIM, matched to team
slugs) and all their sub-teams; role `viewer` reads everything, `admin` reads and mutates
everything. What a principal may not see does not exist for it: the service layer applies the
scope inside its SQL (lookups, lists, counts, cursors, sums), so an invisible row answers exactly
like a missing one and no total counts it. Adapters (REST, GraphQL, the CLI) only pass the scope
on; they never filter themselves.

Derived visibility, decided here too:
- a component is visible when its team is;
- a system when its owner team is, or when one of its components is (it then lists and counts
  its visible components only);
- a domain when its owner team is, or when one of its systems is;
- platform-wide figures are the sum over the visible teams (team daily totals), never the
  platform's own totals; sync runs (platform operations: every team's component count and
  failed aggregates) exist only for principals that see everything.

Applying a scope in a new read (one line each; never compare team ids by hand):
- raw SQL: `where += scope.teams_sql("c.team_id", p)` (a column holding a team id),
  `scope.components_sql("r.component_id", p)` (cost records and other per-component rows),
  `scope.systems_sql("s", p)`, `scope.domains_sql("d", p)`; `p` appends a parameter and
  returns its marker (db.setup.SqlParams). Each returns [] for everything.
- Tortoise: `Component.filter(scope.q())`, `Team.filter(scope.q("id"))`.
- a list of team ids (a range-engine subject): `scope.visible_teams(ids)`; all of them for
  `None`-means-everything callers: `None if scope.everything else sorted(scope.team_ids)`.
- figures no team owns (cost OpenCost reports under no catalog key): only when
  `scope.everything`, else null: they cannot be attributed to what the principal sees.
- acting on one team's rows (alerts): `scope.can_see_team(team_id)`, and a NotFound like a
  missing row when it is False.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from tortoise.expressions import Q

from finops_gql.auth import VIEWER_ROLE, Principal
from finops_gql.catalog import tree
from finops_gql.config import AUTHZ_TEAM, Settings
from finops_gql.db.models import SLUG_MAX
from finops_gql.validation import fits_column

# A raw-SQL parameter marker maker: appends the value to the statement's parameters and returns
# its marker (`?` or `$n`), like catalog.service._Sql.
Mark = Callable[[object], str]


@dataclass(frozen=True, slots=True)
class Scope:
    """Everything (`team_ids` None), or the ids of the teams a principal may see (closed under
    sub-teams). Build it with `scope_for`; EVERYTHING is for the CLI, the worker and admins."""

    team_ids: frozenset[uuid.UUID] | None = None

    @property
    def everything(self) -> bool:
        return self.team_ids is None

    def can_see_team(self, team_id: uuid.UUID | str | None) -> bool:
        if self.team_ids is None:
            return True
        if team_id is None:
            return False
        return (team_id if isinstance(team_id, uuid.UUID) else uuid.UUID(str(team_id))) in (
            self.team_ids
        )

    def visible_teams(self, team_ids: Iterable[uuid.UUID]) -> list[uuid.UUID]:
        """`team_ids` without the invisible ones, in order."""
        return [t for t in team_ids if self.can_see_team(t)]

    # -- applying it: one helper per kind of statement, so nobody writes the filter twice ------

    def teams_sql(self, column: str, mark: Mark) -> list[str]:
        """The condition on a team id column (`c.team_id`, `t.id`) as a list to splice into a
        WHERE: [] for everything, a condition that is never true for no team at all."""
        if self.team_ids is None:
            return []
        if not self.team_ids:
            return ["1 = 0"]
        ids = sorted(self.team_ids)  # stable statements: the same text for the same scope
        return [f"{column} IN ({', '.join(mark(t) for t in ids)})"]

    def components_sql(self, column: str, mark: Mark) -> list[str]:
        """The condition on a component id column (`r.component_id`), for tables without a
        team column (cost records)."""
        teams = self.teams_sql("vc.team_id", mark)
        if not teams:
            return []
        return [f"{column} IN (SELECT vc.id FROM component vc WHERE {teams[0]})"]  # noqa: S608

    def systems_sql(self, alias: str, mark: Mark) -> list[str]:
        """The condition on a `system` row: its owner is visible or one of its components is."""
        owner = self.teams_sql(f"{alias}.owner_id", mark)
        if not owner:
            return []
        member = self.teams_sql("vc.team_id", mark)[0]
        return [
            f"({owner[0]} OR EXISTS (SELECT 1 FROM component vc "  # noqa: S608 (markers only)
            f"WHERE vc.system_id = {alias}.id AND {member}))"
        ]

    def domains_sql(self, alias: str, mark: Mark) -> list[str]:
        """The condition on a `domain` row: its owner is visible or one of its systems is."""
        owner = self.teams_sql(f"{alias}.owner_id", mark)
        if not owner:
            return []
        system = self.systems_sql("vs", mark)[0]
        return [
            f"({owner[0]} OR EXISTS (SELECT 1 FROM system vs "  # noqa: S608 (markers only)
            f"WHERE vs.domain_id = {alias}.id AND {system}))"
        ]

    def q(self, field: str = "team_id") -> Q:
        """The same condition for a Tortoise queryset: `Component.filter(scope.q())`."""
        if self.team_ids is None:
            return Q()
        found: dict[str, Any] = {f"{field}__in": sorted(self.team_ids)}
        return Q(**found)


EVERYTHING = Scope()
NOTHING = Scope(frozenset())


async def scope_for(principal: Principal, settings: Settings) -> Scope:
    """THE authorization function: what `principal` may see under AUTHZ_MODE.

    One statement in team mode for a member (slugs -> teams with their sub-teams, recursive
    CTE); none otherwise. Callers resolve it once per request (the GraphQL context, a REST
    route) and pass it to every service call of that request."""
    if settings.authz_mode == AUTHZ_TEAM and not (
        principal.is_admin or VIEWER_ROLE in principal.roles
    ):
        # A slug longer than the column, or with a NUL, names no team (and PostgreSQL would
        # refuse it as a parameter): ignored like any other unknown slug.
        slugs = {s for s in principal.teams if fits_column(s, SLUG_MAX)}
        return Scope(frozenset(await tree.slug_subtrees(slugs))) if slugs else NOTHING
    return EVERYTHING


EVERYTHING_KEY = "*"


def scope_key(principal: Principal, settings: Settings) -> str:
    """A string equal for two principals exactly when `scope_for` gives them the same scope
    for the same data: shared answers (answercache.py) are keyed by it. Kept beside scope_for so
    the two change together.

    A member's scope is a function of its claimed slugs and the team tree; the tree is data, so
    the data version (db/dataversion.py) in the same cache key covers it. Keying by the slugs
    rather than by the resolved team ids spares a hit the recursive CTE; two slug sets that
    resolve to the same teams merely keep two entries."""
    if settings.authz_mode == AUTHZ_TEAM and not (
        principal.is_admin or VIEWER_ROLE in principal.roles
    ):
        slugs = sorted({s for s in principal.teams if fits_column(s, SLUG_MAX)})
        return "teams:" + json.dumps(slugs)  # unambiguous whatever a claimed slug holds
    return EVERYTHING_KEY
