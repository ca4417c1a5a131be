"""Backstage catalog import: good files, re-imports, and bad files that import nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from finops_gql.catalog.backstage import CatalogError, import_catalog, parse_catalog, stable_id
from finops_gql.db.models import Component, Team

EXAMPLE = (Path(__file__).parent.parent / "examples" / "catalog-info.yaml").read_text()

pytestmark = pytest.mark.usefixtures("services")


async def test_imports_example_catalog() -> None:
    result = await import_catalog(EXAMPLE, "example")
    assert (result.teams, result.components) == (3, 5)  # fraud is a sub-team of payments
    assert result.skipped == ["example document 8: kind API"]
    payments = await Team.get(slug="payments")
    assert payments.name == "Payments"
    assert payments.id == stable_id("group:default/payments")
    assert (await Team.get(slug="discovery")).name == "Search & Discovery"
    checkout = await Component.get(name="checkout")
    assert checkout.budget_usd == 60.0
    assert str(checkout.team_id) == str(payments.id)
    assert checkout.opencost_aggregate == "label:app"
    assert checkout.selector_key == "checkout"
    ledger = await Component.get(name="ledger")
    assert ledger.selector_key == "ledger-v2"
    assert str(ledger.team_id) == str(payments.id)


async def test_reimport_updates_and_never_duplicates() -> None:
    await import_catalog(EXAMPLE)
    await import_catalog(EXAMPLE.replace('"60"', '"75"'))
    assert await Team.all().count() == 3
    assert await Component.all().count() == 5
    assert (await Component.get(name="checkout")).budget_usd == 75.0


async def test_uid_is_used_and_owner_found_in_earlier_import() -> None:
    uid = "7f9d3c52-2a4e-4a57-9a44-2e1c1a1b9b55"
    await import_catalog(
        f"kind: Group\nmetadata: {{name: core, uid: {uid}}}\nspec: {{type: team}}\n"
    )
    await import_catalog("kind: Component\nmetadata: {name: api}\nspec: {owner: core}\n")
    api = await Component.get(name="api")
    assert str(api.team_id) == uid


BAD = [
    (
        "kind: Component\nmetadata: {name: x}\nspec: {owner: nobody}\n",
        "spec.owner group:default/nobody",
    ),
    ("kind: Component\nmetadata: {name: x}\nspec: {}\n", "field spec.owner is missing"),
    ("kind: Component\nspec: {owner: a}\n", "field metadata is missing"),
    ("kind: Component\nmetadata: {name: 'bad name!'}\nspec: {owner: a}\n", "metadata.name"),
    ("metadata: {name: x}\n", "field kind is missing"),
    ("kind: Group\nmetadata: {name: g, uid: not-a-uuid}\nspec: {}\n", "metadata.uid"),
    (
        "kind: Group\nmetadata: {name: g}\nspec: {}\n---\nkind: Component\nmetadata:\n  name: x\n  annotations: {finops.io/budget-usd: lots}\nspec: {owner: g}\n",
        "bad.yaml document 14 (Component x): annotation finops.io/budget-usd",
    ),
    (
        "kind: Group\nmetadata: {name: g}\nspec: {}\n---\nkind: Component\nmetadata:\n  name: x\n  annotations: {opencost.io/aggregate: 'label:app;drop'}\nspec: {owner: g}\n",
        "annotation opencost.io/aggregate",
    ),
    ("key: [unclosed\n", "not valid YAML"),
    ("- a list\n", "expected a mapping"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
async def test_bad_files_name_the_problem_and_import_nothing(text: str, message: str) -> None:
    with pytest.raises(CatalogError, match=message.replace("(", r"\(").replace(")", r"\)")):
        await import_catalog(EXAMPLE + "---\n" + text, "bad.yaml")
    assert await Team.all().count() == 0
    assert await Component.all().count() == 0


def test_parse_is_pure_and_reports_document_numbers() -> None:
    teams, components, _skipped = parse_catalog(EXAMPLE)
    assert [t.slug for t in teams] == ["payments", "discovery", "fraud"]
    assert [c.owner_ref for c in components][:3] == ["group:default/payments"] * 3
