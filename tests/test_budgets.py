"""Budgets on both databases: the status table (each status, both periods, month edges), team
budgets with sub-teams, the alert evaluator's service function, catalog annotations, the admin
mutations and their checks, budgetUsd / overBudget unchanged, and batching."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest

from finops_gql.catalog.backstage import CatalogError, import_catalog
from finops_gql.config import Settings
from finops_gql.costs import budgets
from finops_gql.costs.budgets import BudgetSpec, Period, State, period_days
from finops_gql.db.models import Budget, Component, Team
from finops_gql.errors import InvalidInput
from finops_gql.services import Services
from tests.conftest import QueryCounter, gql, make_component, make_team, token
from tests.test_explorer import daily

pytestmark = pytest.mark.usefixtures("services")

TODAY = date(2026, 3, 26)  # a Thursday


def spec(amount: float, period: Period = Period.MONTHLY, *thresholds: float) -> BudgetSpec:
    return BudgetSpec(amount, "USD", period, thresholds or budgets.DEFAULT_THRESHOLDS)


def flat(last: date, days: int = 56, value: float = 1.0) -> dict[date, float]:
    return {last - timedelta(days=i): value for i in range(days)}


async def status_of(
    services: Services, component: Component, budget: BudgetSpec, today: date = TODAY
) -> budgets.BudgetStatus:
    await budgets.write_component_budget(component.id, budget)
    found = (await services.budgets.component_statuses([component.id], today))[component.id]
    assert found is not None
    return found


# -- the status table -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "state", "crossed"),
    [
        (100.0, State.OK, ()),  # spent 25 of 100, forecast 31
        (40.0, State.WARNING, (0.5,)),  # 25 > 20, forecast 31 <= 40
        (30.0, State.FORECAST_OVER, (0.5, 0.8)),  # 25 <= 30 < forecast 31
        (20.0, State.OVER, (0.5, 0.8, 1.0)),  # 25 > 20
        (25.0, State.FORECAST_OVER, (0.5, 0.8)),  # exactly the amount is not over
    ],
)
async def test_monthly_status_table(
    services: Services, amount: float, state: State, crossed: tuple[float, ...]
) -> None:
    component = await make_component(await make_team())
    await daily(component, flat(TODAY - timedelta(days=1)))  # 1.0 a day
    found = await status_of(services, component, spec(amount))
    assert (found.period_start, found.period_end) == (date(2026, 3, 1), date(2026, 3, 31))
    assert found.spent == 25.0  # March 1..25: today is not complete
    assert found.forecast_spend == 31.0  # + 6 days at 1.0
    assert found.remaining == round(amount - 25.0, 5)
    assert found.ratio == pytest.approx(25.0 / amount)
    assert found.forecast_ratio == pytest.approx(31.0 / amount)
    assert (found.state, found.crossed_thresholds) == (state, crossed)
    assert found.forecast_method.value == "TREND_WEEKLY"


@pytest.mark.parametrize(
    ("amount", "state"),
    [(400.0, State.OK), (250.0, State.WARNING), (200.0, State.FORECAST_OVER), (150.0, State.OVER)],
)
async def test_rolling_status_table(services: Services, amount: float, state: State) -> None:
    """A ramp of 1 + 0.1 a day: the last 30 days cost 151.5, the next 30 are forecast at 241.5."""
    component = await make_component(await make_team())
    last = TODAY - timedelta(days=1)
    await daily(component, {last - timedelta(days=55 - i): 1 + 0.1 * i for i in range(56)})
    found = await status_of(services, component, spec(amount, Period.ROLLING_30_DAYS))
    assert (found.period_start, found.period_end) == (last - timedelta(days=29), last)
    assert found.spent == pytest.approx(151.5)
    assert found.forecast_spend == pytest.approx(241.5, abs=0.01)
    assert found.state is state


async def test_month_edges(services: Services) -> None:
    component = await make_component(await make_team())
    await daily(component, flat(date(2028, 3, 31), days=120))  # covers Feb 2028 (leap year)
    first_day = await status_of(services, component, spec(100.0), today=date(2028, 3, 1))
    # The first day of a month: nothing complete yet, the whole month forecast.
    assert (first_day.period_start, first_day.period_end) == (date(2028, 3, 1), date(2028, 3, 31))
    assert (first_day.spent, first_day.ratio, first_day.crossed_thresholds) == (0.0, 0.0, ())
    assert first_day.forecast_spend == 31.0
    leap = await status_of(services, component, spec(100.0), today=date(2028, 2, 29))
    assert (leap.period_start, leap.period_end) == (date(2028, 2, 1), date(2028, 2, 29))
    assert (leap.spent, leap.forecast_spend) == (28.0, 29.0)
    assert period_days(Period.MONTHLY, date(2027, 2, 15))[1] == date(2027, 2, 28)
    assert period_days(Period.MONTHLY, date(2026, 12, 31)) == (
        date(2026, 12, 1),
        date(2026, 12, 31),
        date(2026, 12, 31),
    )
    rolling = period_days(Period.ROLLING_30_DAYS, date(2028, 3, 1))
    assert rolling == (date(2028, 1, 31), date(2028, 2, 29), date(2028, 3, 30))


async def test_new_component_falls_back_and_zero_budget_has_no_ratio(services: Services) -> None:
    component = await make_component(await make_team())
    await daily(component, flat(TODAY - timedelta(days=1), days=3, value=2.0))
    found = await status_of(services, component, spec(0.0, Period.ROLLING_30_DAYS))
    assert found.forecast_method.value == "MEAN"
    assert (found.spent, found.forecast_spend, found.state) == (6.0, 60.0, State.OVER)
    assert (found.ratio, found.forecast_ratio) == (None, None)


async def test_team_budget_covers_sub_teams(services: Services) -> None:
    parent, child = await make_team("payments"), await make_team("fraud")
    child.parent_id = parent.id
    await child.save()
    last = TODAY - timedelta(days=1)
    await daily(await make_component(parent, "checkout"), flat(last))
    await daily(await make_component(child, "scoring"), flat(last, value=2.0))
    await budgets.write_team_budget(parent.id, spec(80.0, Period.ROLLING_30_DAYS))
    await budgets.write_team_budget(child.id, spec(80.0, Period.ROLLING_30_DAYS))
    found = await services.budgets.team_statuses([parent.id, child.id, uuid.uuid4()], TODAY)
    parent_status, child_status = found[parent.id], found[child.id]
    assert parent_status is not None
    assert child_status is not None
    assert (parent_status.spent, parent_status.state) == (90.0, State.OVER)  # 30 + 60
    assert (child_status.spent, child_status.state) == (60.0, State.WARNING)
    assert list(found.values())[2] is None


async def test_budget_statuses_for_the_evaluator_in_four_statements(
    services: Services, sql_counter: QueryCounter
) -> None:
    parent, child = await make_team("payments"), await make_team("fraud")
    child.parent_id = parent.id
    await child.save()
    last = TODAY - timedelta(days=1)
    for i in range(5):
        component = await make_component(child if i % 2 else parent, f"c{i}")
        await daily(component, flat(last))
        await budgets.write_component_budget(component.id, spec(10.0 * (i + 1)))
    await budgets.write_team_budget(parent.id, spec(200.0))
    await budgets.write_team_budget(child.id, spec(5.0, Period.ROLLING_30_DAYS))
    sql_counter.statements.clear()
    found = await services.budgets.budget_statuses(TODAY)
    assert len(sql_counter.statements) == 4
    assert len(found) == 7
    by_component = [s for s in found if s.component_id is not None]
    ids = [s.component_id for s in by_component]
    assert ids == sorted(ids, key=lambda i: uuid.UUID(str(i)))  # by component id
    states = {s.budget.amount: s.state for s in by_component}
    assert states == {
        10.0: State.OVER,
        20.0: State.OVER,
        30.0: State.FORECAST_OVER,
        40.0: State.WARNING,
        50.0: State.OK,  # 25 is not above half of 50
    }
    teams = {s.team_id: s for s in found if s.team_id is not None}
    assert teams[parent.id].spent == 125.0
    assert teams[parent.id].state is State.WARNING
    assert teams[child.id].state is State.OVER


def test_threshold_and_period_checks() -> None:
    assert budgets.check_thresholds(None) == (0.5, 0.8, 1.0)
    assert budgets.check_thresholds([0.9, 1, 1.5]) == (0.9, 1.0, 1.5)
    for bad, message in (
        ([], "1 to 10 ratios"),
        ([0.1 * i for i in range(1, 12)], "1 to 10 ratios"),
        ([0.8, 0.5], "ascending order without repeats"),
        ([0.5, 0.5], "ascending order without repeats"),
        ([0], "> 0 and <= 10"),
        ([10.5], "> 0 and <= 10"),
        ([float("nan")], "> 0 and <= 10"),
        ([float("inf")], "> 0 and <= 10"),
        ([True], "must be numbers"),
    ):
        with pytest.raises(InvalidInput, match=message):
            budgets.check_thresholds(bad)
    assert budgets.parse_period("monthly") is Period.MONTHLY
    assert budgets.parse_period("ROLLING_30_DAYS") is Period.ROLLING_30_DAYS
    with pytest.raises(InvalidInput, match="rolling-30-days, monthly"):
        budgets.parse_period("weekly")
    with pytest.raises(InvalidInput, match="comma-separated numbers"):
        budgets.parse_thresholds("0.5;0.8")
    with pytest.raises(InvalidInput, match="not the currency of the cost data, USD"):
        budgets.check_currency("EUR", "USD")
    assert budgets.check_currency("usd", "USD") == "USD"


# -- catalog annotations ----------------------------------------------------------------------

CATALOG = """
apiVersion: backstage.io/v1alpha1
kind: Group
metadata:
  name: payments
  annotations:
    finops.io/budget-usd: "900"
    finops.io/budget-period: monthly
spec: {{type: team, children: []}}
---
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: checkout
  annotations:
    {annotations}
spec: {{type: service, owner: payments, lifecycle: production}}
"""


def catalog(*annotations: str) -> str:
    return CATALOG.format(annotations="\n    ".join(annotations) or "{}")


async def test_annotations_set_budgets_and_the_file_stays_the_truth(services: Services) -> None:
    await import_catalog(
        catalog(
            'finops.io/budget-usd: "120"',
            "finops.io/budget-period: rolling-30-days",
            'finops.io/budget-thresholds: "0.7, 0.9,1.2"',
        )
    )
    component = await Component.get(name="checkout")
    assert component.budget_usd == 120.0  # the rolling budget's mirror
    row = await Budget.get(component_id=component.id)
    assert (row.amount, row.period, row.thresholds) == (120.0, "ROLLING_30_DAYS", [0.7, 0.9, 1.2])
    team_row = await Budget.get(team_id=(await Team.get(slug="payments")).id)
    assert (team_row.amount, team_row.period, team_row.thresholds) == (
        900.0,
        "MONTHLY",
        [0.5, 0.8, 1.0],
    )
    # A monthly component budget: budgetUsd (a 30-day figure) is null.
    await import_catalog(catalog("finops.io/budget-usd: 50", "finops.io/budget-period: MONTHLY"))
    assert (await Component.get(name="checkout")).budget_usd is None
    assert (await Budget.get(component_id=component.id)).period == "MONTHLY"
    # No annotation any more: no budget.
    await import_catalog(catalog())
    assert not await Budget.filter(component_id=component.id).exists()
    assert (await Component.get(name="checkout")).budget_usd is None
    assert await Budget.all().count() == 1  # the team's


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        (
            ["finops.io/budget-usd: 10", "finops.io/budget-period: weekly"],
            "document 2 (Component checkout): annotation finops.io/budget-period: period must "
            "be one of rolling-30-days, monthly",
        ),
        (
            ["finops.io/budget-usd: 10", 'finops.io/budget-thresholds: "0.8,0.5"'],
            "document 2 (Component checkout): annotation finops.io/budget-thresholds: thresholds"
            " must be in ascending order",
        ),
        (
            ["finops.io/budget-usd: 10", 'finops.io/budget-thresholds: "half"'],
            "annotation finops.io/budget-thresholds: thresholds must be comma-separated numbers",
        ),
        (
            ["finops.io/budget-usd: 10", "finops.io/budget-thresholds: [0.5]"],
            "field metadata.annotations[finops.io/budget-thresholds] must be a string",
        ),
        (
            ["finops.io/budget-period: monthly"],
            "document 2 (Component checkout): annotation finops.io/budget-period needs the "
            "annotation finops.io/budget-usd",
        ),
        (
            ['finops.io/budget-thresholds: "0.5"'],
            "annotation finops.io/budget-thresholds needs the annotation finops.io/budget-usd",
        ),
        (["finops.io/budget-usd: -3"], "annotation finops.io/budget-usd: budgetUsd must be >= 0"),
    ],
)
async def test_bad_annotations_are_refused_and_nothing_is_imported(
    services: Services, annotations: list[str], message: str
) -> None:
    with pytest.raises(CatalogError) as refused:
        await import_catalog(catalog(*annotations))
    assert message in str(refused.value)
    assert await Team.all().count() == 0
    assert await Budget.all().count() == 0


async def test_group_annotations_are_checked_and_budgets_take_the_cost_currency(
    services: Services,
) -> None:
    bad_group = catalog().replace("budget-period: monthly", "budget-period: yearly")
    with pytest.raises(CatalogError, match=r"document 1 \(Group payments\): annotation finops"):
        await import_catalog(bad_group)
    # finops.io/budget-usd has always been an amount in COST_CURRENCY (examples/ says so).
    await import_catalog(catalog(), currency="EUR")
    assert [b.currency for b in await Budget.all()] == ["EUR"]


# -- GraphQL ------------------------------------------------------------------------------------

STATUS = """budgetStatus { budget { amount currency period thresholds } periodStart periodEnd
  spent remaining ratio forecastSpend forecastRatio forecastMethod status crossedThresholds }"""


def admin(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(settings, 'admin')}"}


SET_COMPONENT = f"""mutation($c: ID!, $b: BudgetInput!) {{ setComponentBudget(componentId: $c,
  budget: $b) {{ budgetUsd overBudget {STATUS} }} }}"""


async def test_mutations_need_admin(client: httpx.AsyncClient, settings: Settings) -> None:
    component = await make_component(await make_team())
    for query, variables in (
        (SET_COMPONENT, {"c": str(component.id), "b": {"amount": 5}}),
        (
            "mutation($t: ID!) { setTeamBudget(teamId: $t, budget: {amount: 5}) { id } }",
            {"t": str(component.team_id)},
        ),
        ("mutation($c: ID!) { removeBudget(componentId: $c) }", {"c": str(component.id)}),
    ):
        body = await gql(client, query, variables)
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN", body
    assert await Budget.all().count() == 0


async def test_set_and_remove_budgets(
    client: httpx.AsyncClient, settings: Settings, services: Services
) -> None:
    services.costs.clock = lambda: datetime(2026, 3, 26, 12, tzinfo=UTC)
    team = await make_team()
    component = await make_component(team)
    await daily(component, flat(TODAY - timedelta(days=1)))
    await services.costs.refresh_rollups()  # cost30d = 30
    headers = admin(settings)
    body = await gql(
        client,
        SET_COMPONENT,
        {"c": str(component.id), "b": {"amount": 29, "thresholds": [0.25, 1]}},
        headers,
    )
    assert "errors" not in body, body
    answer = body["data"]["setComponentBudget"]
    assert (answer["budgetUsd"], answer["overBudget"]) == (29, True)
    assert answer["budgetStatus"] == {
        "budget": {
            "amount": 29,
            "currency": "USD",
            "period": "ROLLING_30_DAYS",
            "thresholds": [0.25, 1],
        },
        "periodStart": "2026-02-24",
        "periodEnd": "2026-03-25",
        "spent": 30,
        "remaining": -1,
        "ratio": 30 / 29,
        "forecastSpend": 30,
        "forecastRatio": 30 / 29,
        "forecastMethod": "TREND_WEEKLY",
        "status": "OVER",
        "crossedThresholds": [0.25, 1],
    }
    # MONTHLY: budgetUsd (a 30-day figure) is null, so overBudget is false.
    body = await gql(
        client,
        SET_COMPONENT,
        {"c": str(component.id), "b": {"amount": 29, "period": "MONTHLY"}},
        headers,
    )
    answer = body["data"]["setComponentBudget"]
    assert (answer["budgetUsd"], answer["overBudget"]) == (None, False)
    assert answer["budgetStatus"]["status"] == "FORECAST_OVER"  # 25 spent, 31 forecast
    # setBudget keeps its meaning: a 30-day budget, thresholds kept.
    body = await gql(
        client,
        "mutation($c: ID!) { setBudget(componentId: $c, budgetUsd: 40) { budgetUsd overBudget "
        "budgetStatus { budget { period thresholds } status } } }",
        {"c": str(component.id)},
        headers,
    )
    assert body["data"]["setBudget"] == {
        "budgetUsd": 40,
        "overBudget": False,
        "budgetStatus": {
            "budget": {"period": "ROLLING_30_DAYS", "thresholds": [0.5, 0.8, 1]},
            "status": "WARNING",
        },
    }
    team_body = await gql(
        client,
        f"""mutation($t: ID!) {{ setTeamBudget(teamId: $t, budget: {{amount: 1000, period: MONTHLY,
        thresholds: [0.01]}}) {{ slug {STATUS} }} }}""",
        {"t": str(team.id)},
        headers,
    )
    assert team_body["data"]["setTeamBudget"]["budgetStatus"]["crossedThresholds"] == [0.01]
    remove = "mutation($c: ID, $t: ID) { removeBudget(componentId: $c, teamId: $t) }"
    assert (await gql(client, remove, {"c": str(component.id)}, headers))["data"] == {
        "removeBudget": True
    }
    assert (await gql(client, remove, {"c": str(component.id)}, headers))["data"] == {
        "removeBudget": False
    }
    assert (await gql(client, remove, {"t": str(team.id)}, headers))["data"] == {
        "removeBudget": True
    }
    assert (await Component.get(id=component.id)).budget_usd is None
    read = await gql(
        client,
        f"query($c: ID!) {{ component(id: $c) {{ budgetUsd {STATUS} team {{ {STATUS} }} }} }}",
        {"c": str(component.id)},
    )
    assert read["data"]["component"] == {
        "budgetUsd": None,
        "budgetStatus": None,
        "team": {"budgetStatus": None},
    }
    # setBudget(null) removes a budget whatever its period.
    await gql(
        client,
        SET_COMPONENT,
        {"c": str(component.id), "b": {"amount": 5, "period": "MONTHLY"}},
        headers,
    )
    await gql(
        client,
        "mutation($c: ID!) { setBudget(componentId: $c, budgetUsd: null) { id } }",
        {"c": str(component.id)},
        headers,
    )
    assert await Budget.all().count() == 0


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        ({"amount": -1}, "amount must be >= 0"),
        ({"amount": 2e9}, "at most 1e+09 (BUDGET_MAX_USD)"),
        ({"amount": 5, "currency": "EUR"}, "not the currency of the cost data, USD"),
        ({"amount": 5, "thresholds": []}, "1 to 10 ratios"),
        ({"amount": 5, "thresholds": [0.9, 0.8]}, "ascending order"),
        ({"amount": 5, "thresholds": [11]}, "<= 10"),
    ],
)
async def test_bad_budgets_are_bad_input(
    client: httpx.AsyncClient, settings: Settings, budget: dict[str, Any], message: str
) -> None:
    component = await make_component(await make_team())
    body = await gql(client, SET_COMPONENT, {"c": str(component.id), "b": budget}, admin(settings))
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
    assert message in body["errors"][0]["message"]
    assert await Budget.all().count() == 0


async def test_unknown_subjects_and_ambiguous_removal(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    headers, missing = admin(settings), str(uuid.uuid4())
    body = await gql(client, SET_COMPONENT, {"c": missing, "b": {"amount": 1}}, headers)
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    body = await gql(
        client,
        "mutation($t: ID!) { setTeamBudget(teamId: $t, budget: {amount: 1}) { id } }",
        {"t": missing},
        headers,
    )
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    remove = "mutation($c: ID, $t: ID) { removeBudget(componentId: $c, teamId: $t) }"
    assert (await gql(client, remove, {"t": missing}, headers))["errors"][0]["extensions"][
        "code"
    ] == "NOT_FOUND"
    for variables in ({}, {"c": missing, "t": missing}):
        body = await gql(client, remove, variables, headers)
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        assert "exactly one of componentId or teamId" in body["errors"][0]["message"]


async def test_a_page_of_budget_statuses_costs_a_fixed_number_of_statements(
    client: httpx.AsyncClient, services: Services, sql_counter: QueryCounter
) -> None:
    query = f"""{{ teams(first: 50) {{ nodes {{ {STATUS}
      components(first: 50) {{ nodes {{ {STATUS} }} }} }} }} }}"""

    async def statements(count: int) -> int:
        for i in range(count):
            team = await make_team(f"t{count}-{i}")
            await budgets.write_team_budget(team.id, spec(50.0))
            component = await make_component(team, f"c{count}-{i}")
            await daily(component, flat(date(2026, 3, 1), days=20))
            await budgets.write_component_budget(component.id, spec(10.0))
        sql_counter.statements.clear()
        body = await gql(client, query)
        assert "errors" not in body, body
        return len(sql_counter.statements)

    # teams, their components, component budgets + daily, team budgets + subtrees + daily
    assert await statements(2) == await statements(6) == 7
