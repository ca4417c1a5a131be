"""Import Backstage catalog-info.yaml files: `kind: Group` -> Team, `kind: Component` -> Component.

Parsing is pure and checks everything before the database is touched; the write is one
transaction, so a bad file imports nothing.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import yaml
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from finops_gql.catalog.service import (
    check_aggregate,
    check_budget,
    check_key,
    describe,
    selector_owner,
)
from finops_gql.db.models import DEFAULT_AGGREGATE, Component, Team
from finops_gql.db.setup import placeholders, sql_value
from finops_gql.errors import InvalidInput
from finops_gql.validation import BUDGET_MAX_USD

ANNOTATION_AGGREGATE = "opencost.io/aggregate"
ANNOTATION_KEY = "opencost.io/key"
ANNOTATION_BUDGET = "finops.io/budget-usd"
# Stable ids for entities without metadata.uid: uuid5 of the entity ref in this namespace.
ENTITY_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://backstage.io/catalog")
NAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")


class CatalogError(InvalidInput):
    """A catalog file is malformed; the message names the document and the field."""


@dataclass(frozen=True)
class TeamEntity:
    id: uuid.UUID
    ref: str
    name: str
    slug: str


@dataclass(frozen=True)
class ComponentEntity:
    id: uuid.UUID
    ref: str
    name: str
    owner_ref: str
    budget_usd: float | None
    aggregate: str
    key: str | None


@dataclass
class ImportResult:
    teams: int = 0
    components: int = 0
    skipped: list[str] = field(default_factory=list)


def entity_ref(kind: str, namespace: str, name: str) -> str:
    return f"{kind.lower()}:{namespace}/{name}"


def stable_id(ref: str) -> uuid.UUID:
    return uuid.uuid5(ENTITY_NAMESPACE, ref.lower())


def owner_ref(owner: str, namespace: str) -> str:
    """Backstage's shorthand: `team`, `group:team` and `group:ns/team` all name a Group."""
    kind, _, rest = owner.rpartition(":")
    kind = kind or "group"
    ns, _, name = rest.rpartition("/")
    return entity_ref(kind, ns or namespace, name)


def _slug(namespace: str, name: str) -> str:
    base = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    return base if namespace == "default" else f"{namespace.lower()}-{base}"


def parse_catalog(
    text: str, source: str = "catalog", *, budget_max_usd: float = BUDGET_MAX_USD
) -> tuple[list[TeamEntity], list[ComponentEntity], list[str]]:
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        raise CatalogError(f"{source}: not valid YAML: {exc}") from None
    teams: list[TeamEntity] = []
    components: list[ComponentEntity] = []
    skipped: list[str] = []
    for index, doc in enumerate(documents, start=1):
        if doc is None:
            continue
        where = f"{source} document {index}"
        if not isinstance(doc, dict):
            raise CatalogError(f"{where}: expected a mapping with kind and metadata")
        kind = doc.get("kind")
        if not isinstance(kind, str):
            raise CatalogError(f"{where}: field kind is missing")
        if kind not in {"Group", "Component"}:
            skipped.append(f"{where}: kind {kind}")
            continue
        metadata = _mapping(doc, "metadata", where)
        name = metadata.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise CatalogError(
                f"{where} ({kind}): field metadata.name is missing or not a valid name"
            )
        where = f"{where} ({kind} {name})"
        namespace = metadata.get("namespace", "default")
        if not isinstance(namespace, str) or not NAME_RE.match(namespace):
            raise CatalogError(f"{where}: field metadata.namespace is not a valid name")
        ref = entity_ref(kind, namespace, name)
        ident = _uid(metadata, ref, where)
        spec = _mapping(doc, "spec", where)
        if kind == "Group":
            profile = spec.get("profile") if isinstance(spec.get("profile"), dict) else {}
            title = metadata.get("title") or (profile or {}).get("displayName") or name
            teams.append(TeamEntity(ident, ref, str(title), _slug(namespace, name)))
            continue
        owner = spec.get("owner")
        if not isinstance(owner, str) or not owner.strip():
            raise CatalogError(f"{where}: field spec.owner is missing")
        annotations = metadata.get("annotations") or {}
        if not isinstance(annotations, dict):
            raise CatalogError(f"{where}: field metadata.annotations must be a mapping")
        components.append(
            ComponentEntity(
                id=ident,
                ref=ref,
                name=name,
                owner_ref=owner_ref(owner.strip(), namespace),
                budget_usd=_budget(annotations.get(ANNOTATION_BUDGET), where, budget_max_usd),
                aggregate=_checked(
                    check_aggregate,
                    annotations.get(ANNOTATION_AGGREGATE, DEFAULT_AGGREGATE),
                    where,
                    ANNOTATION_AGGREGATE,
                ),
                key=_checked(check_key, annotations.get(ANNOTATION_KEY), where, ANNOTATION_KEY),
            )
        )
    _one_component_per_selector(components, source)
    return teams, components, skipped


def _one_component_per_selector(components: list[ComponentEntity], source: str) -> None:
    """Two components on one OpenCost key would both get its cost: totals would count it twice."""
    claims: dict[tuple[str, str], ComponentEntity] = {}
    for component in components:
        selector = (component.aggregate, component.key or component.name)
        first = claims.setdefault(selector, component)
        if first is not component:
            raise CatalogError(
                f"{source}: {first.ref} and {component.ref} both claim OpenCost aggregate "
                f"{selector[0]} key {selector[1]!r}: give one of them an {ANNOTATION_KEY} "
                "annotation"
            )


def _mapping(doc: dict[str, Any], name: str, where: str) -> dict[str, Any]:
    value = doc.get(name)
    if not isinstance(value, dict):
        raise CatalogError(f"{where}: field {name} is missing or not a mapping")
    return value


def _uid(metadata: dict[str, Any], ref: str, where: str) -> uuid.UUID:
    uid = metadata.get("uid")
    if uid is None:
        return stable_id(ref)
    try:
        return uuid.UUID(str(uid))
    except ValueError:
        raise CatalogError(f"{where}: field metadata.uid is not a UUID: {uid!r}") from None


def _budget(raw: object, where: str, maximum: float) -> float | None:
    if raw is None:
        return None
    try:
        return check_budget(float(str(raw)), maximum)
    except InvalidInput as exc:
        raise CatalogError(f"{where}: annotation {ANNOTATION_BUDGET}: {exc}") from None
    except ValueError:
        raise CatalogError(
            f"{where}: annotation {ANNOTATION_BUDGET} must be a number >= 0, got {raw!r}"
        ) from None


def _checked(check: Any, raw: object, where: str, annotation: str) -> Any:
    if raw is not None and not isinstance(raw, str):
        raise CatalogError(f"{where}: annotation {annotation} must be a string")
    try:
        return check(raw)
    except InvalidInput as exc:
        raise CatalogError(f"{where}: annotation {annotation}: {exc}") from None


async def import_catalog(
    text: str, source: str = "catalog", *, budget_max_usd: float = BUDGET_MAX_USD
) -> ImportResult:
    teams, components, skipped = parse_catalog(text, source, budget_max_usd=budget_max_usd)
    try:
        return await _write(teams, components, skipped, source)
    except IntegrityError:
        # The checks below passed, so a concurrent writer took a slug, id or selector meanwhile.
        raise CatalogError(
            f"{source}: a team slug, id or OpenCost selector in this file was claimed by a "
            "concurrent change; nothing was imported, run the import again"
        ) from None


async def _write(
    teams: list[TeamEntity], components: list[ComponentEntity], skipped: list[str], source: str
) -> ImportResult:
    result = ImportResult(skipped=skipped)
    team_ids = {t.ref: t.id for t in teams}
    in_file = [c.id for c in components]
    async with in_transaction() as conn:
        for team in teams:
            clash = await Team.filter(slug=team.slug).exclude(id=team.id).first()
            if clash is not None:
                raise CatalogError(
                    f"{source}: {team.ref}: slug {team.slug!r} belongs to another team"
                )
            await Team.update_or_create(id=team.id, defaults={"name": team.name, "slug": team.slug})
            result.teams += 1
        if in_file:
            # Stored components of this file may trade keys (one's old key is another's new
            # one): park their selectors on unique placeholders first, so the unique index never
            # sees a half-written swap. The loop below writes the real ones.
            marks = placeholders(len(in_file))
            await conn.execute_query(
                "UPDATE component SET opencost_key = '~' || CAST(id AS TEXT) "  # noqa: S608 (placeholders only)
                f"WHERE id IN ({', '.join(marks)})",
                [sql_value(i) for i in in_file],
            )
        for component in components:
            owner_id = team_ids.get(component.owner_ref)
            if owner_id is None:
                # An owner imported earlier: by its stable id, or by slug if it carried a uid.
                namespace, _, name = component.owner_ref.partition(":")[2].partition("/")
                owner = await Team.filter(
                    Q(id=stable_id(component.owner_ref)) | Q(slug=_slug(namespace, name))
                ).first()
                owner_id = owner.id if owner is not None else None
            if owner_id is None:
                raise CatalogError(
                    f"{source}: {component.ref}: spec.owner {component.owner_ref} is not a Group "
                    "in this file or an already imported team"
                )
            key = component.key or component.name
            holder = await selector_owner(component.aggregate, key, exclude=in_file)
            if holder is not None:
                raise CatalogError(
                    f"{source}: {component.ref} claims OpenCost aggregate {component.aggregate} "
                    f"key {key!r}, which {await describe(holder)} already claims: give one of "
                    f"them another key (annotation {ANNOTATION_KEY})"
                )
            await Component.update_or_create(
                id=component.id,
                defaults={
                    "name": component.name,
                    "team_id": owner_id,
                    "budget_usd": component.budget_usd,
                    "opencost_aggregate": component.aggregate,
                    "opencost_key": component.key,
                },
            )
            result.components += 1
    return result
