"""Import Backstage catalog-info.yaml files: `kind: Group` -> Team (with its parent),
`kind: Domain` -> Domain, `kind: System` -> System, `kind: Component` -> Component.

Parsing is pure and checks everything before the database is touched; the write is one
transaction, so a bad file imports nothing.

The YAML is untrusted input, read with bounds that hold before anything is built from it: the file
size (CATALOG_MAX_BYTES), the nesting depth, and the number of nodes aliases may add once expanded
(an anchor "bomb" of a few hundred bytes expands to billions of nodes). Both are checked while
composing, where an alias is still one shared node. Every message is capped, and so is any input
it echoes.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

import yaml
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from finops_gql.catalog.service import (
    check_aggregate,
    check_budget,
    check_key,
    check_name,
    describe,
    selector_owner,
)
from finops_gql.costs import explorer
from finops_gql.costs.budgets import (
    DEFAULT_THRESHOLDS,
    BudgetSpec,
    Period,
    parse_period,
    parse_thresholds,
)
from finops_gql.db import dataversion
from finops_gql.db.models import DEFAULT_AGGREGATE, Budget, Component, Domain, System, Team
from finops_gql.db.setup import placeholders, sql_value
from finops_gql.errors import InvalidInput
from finops_gql.validation import BUDGET_MAX_USD

ANNOTATION_AGGREGATE = "opencost.io/aggregate"
ANNOTATION_KEY = "opencost.io/key"
ANNOTATION_BUDGET = "finops.io/budget-usd"
ANNOTATION_BUDGET_PERIOD = "finops.io/budget-period"
ANNOTATION_BUDGET_THRESHOLDS = "finops.io/budget-thresholds"
# Stable ids for entities without metadata.uid: uuid5 of the entity ref in this namespace.
ENTITY_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://backstage.io/catalog")
NAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")

# Default of CATALOG_MAX_BYTES: about 4,000 entities; pure-Python YAML reads it in about 2 s.
DEFAULT_MAX_BYTES = 1_048_576
# A catalog entity nests 4 levels deep; the YAML composer recurses per level.
MAX_DEPTH = 32
# YAML nodes that aliases may add to one file once expanded (a `<<: *defaults` merge of 10
# annotations adds 21): room for sharing, none for a bomb.
MAX_ALIAS_NODES = 1_000
MAX_MESSAGE = 500  # characters of one error message
MAX_ECHO = 60  # characters of input echoed in a message
SLUG_MAX = 100  # Team.slug
REF_MAX = 255  # an entity ref: kind:namespace/name
# What PostgreSQL cannot store in text (NUL) and UTF-8 cannot encode (lone surrogates).
UNSTORABLE = re.compile("[\\x00\\ud800-\\udfff]")


class CatalogError(InvalidInput):
    """A catalog file is malformed; the message names the document and the field."""

    def __init__(self, message: str) -> None:
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 3] + "..."
        super().__init__(message)


@dataclass(frozen=True)
class TeamEntity:
    id: uuid.UUID
    ref: str
    name: str
    slug: str
    where: str = field(default="", compare=False)
    # The Group tree as this document states it: spec.parent, and spec.children with the index
    # of each entry (for messages).
    parent_ref: str | None = None
    children_refs: tuple[str, ...] = ()
    budget: BudgetSpec | None = None  # the finops.io/budget-* annotations


@dataclass(frozen=True)
class DomainEntity:
    id: uuid.UUID
    ref: str
    name: str
    slug: str
    owner_ref: str
    where: str = field(default="", compare=False)


@dataclass(frozen=True)
class SystemEntity:
    id: uuid.UUID
    ref: str
    name: str
    slug: str
    owner_ref: str
    domain_ref: str | None
    where: str = field(default="", compare=False)


@dataclass
class Catalog:
    """Everything a file declares, checked, before the database is touched."""

    teams: list[TeamEntity] = field(default_factory=list)
    components: list[ComponentEntity] = field(default_factory=list)
    domains: list[DomainEntity] = field(default_factory=list)
    systems: list[SystemEntity] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ComponentEntity:
    id: uuid.UUID
    ref: str
    name: str
    owner_ref: str
    budget_usd: float | None
    aggregate: str
    key: str | None
    where: str = field(default="", compare=False)
    system_ref: str | None = None
    budget: BudgetSpec | None = None  # the finops.io/budget-* annotations (budget_usd: mirror)


@dataclass
class ImportResult:
    teams: int = 0
    components: int = 0
    domains: int = 0
    systems: int = 0
    skipped: list[str] = field(default_factory=list)


def entity_ref(kind: str, namespace: str, name: str) -> str:
    return f"{kind.lower()}:{namespace}/{name}"


def stable_id(ref: str) -> uuid.UUID:
    return uuid.uuid5(ENTITY_NAMESPACE, ref.lower())


def owner_ref(owner: str, namespace: str, default_kind: str = "group") -> str:
    """Backstage's shorthand: `team`, `group:team` and `group:ns/team` all name a Group (and
    `shop`, `system:shop`, ... a System where a System is expected)."""
    kind, _, rest = owner.rpartition(":")
    kind = kind or default_kind
    ns, _, name = rest.rpartition("/")
    return entity_ref(kind, ns or namespace, name)


def _reference(
    value: object, namespace: str, kind: str, where: str, name: str, *, required: bool
) -> str | None:
    """An entity ref field (spec.owner, spec.system, ...) naming an entity of `kind`."""
    if value is None and not required:
        return None
    text = _text(value, where, name, REF_MAX).strip()
    if not text:
        if not required:
            return None
        raise CatalogError(f"{where}: field {name} is missing")
    ref = owner_ref(text, namespace, kind)
    if not ref.startswith(f"{kind}:"):
        raise CatalogError(
            f"{where}: field {name} {_show(text)} names a {ref.partition(':')[0]}, "
            f"expected a {kind.capitalize()}"
        )
    return ref


def _slug(namespace: str, name: str) -> str:
    qualified = name if namespace == "default" else f"{namespace}-{name}"
    return re.sub(r"[^a-z0-9-]+", "-", qualified.lower()).strip("-")


def _show(value: object) -> str:
    """A bounded picture of untrusted input for a message: strings clipped, other values named."""
    if isinstance(value, str):
        if len(value) <= MAX_ECHO:
            return repr(value)
        return f"{value[:MAX_ECHO]!r}... ({len(value)} characters)"
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"


class _YAMLLimit(yaml.MarkedYAMLError):
    """A bound of the catalog loader was hit; reported like any YAML error, with its position."""


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that bounds nesting depth and alias expansion while composing, before anything
    is expanded or constructed: there, an alias is still a reference to the anchored node."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.document = 0
        self._depth = 0
        self._nodes = 0  # nodes composed in this file, each alias counted as its expansion
        self._alias_nodes = 0  # of those, the nodes added by aliases
        # Expanded size of each anchored node of the document being composed (anchors are per
        # document); only anchored ones are kept, so nodes of earlier documents can be freed.
        self._sizes: dict[str, int] = {}

    def compose_document(self) -> yaml.Node | None:
        self.document += 1
        self._sizes = {}
        return super().compose_document()

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]  # untyped in the stubs
        mark, anchor = event.start_mark, event.anchor
        if isinstance(event, yaml.AliasEvent):
            if anchor in self.anchors:  # else the composer reports an undefined alias
                size = self._sizes.get(anchor)
                if size is None:
                    raise _YAMLLimit(
                        problem=f"alias *{_clip(anchor)} refers to a node that contains "
                        "it (recursive aliases are not accepted)",
                        problem_mark=mark,
                    )
                self._nodes += size
                self._alias_nodes += size
                if self._alias_nodes > MAX_ALIAS_NODES:
                    raise _YAMLLimit(
                        problem=f"aliases expand to more than {MAX_ALIAS_NODES} YAML nodes "
                        "in this file (the limit; anchors and aliases are for small reuse)",
                        problem_mark=mark,
                    )
            return super().compose_node(parent, index)
        if self._depth >= MAX_DEPTH:
            raise _YAMLLimit(
                problem=f"nested more than {MAX_DEPTH} levels deep (the limit)",
                problem_mark=mark,
            )
        self._depth += 1
        before = self._nodes
        self._nodes += 1
        node = super().compose_node(parent, index)
        self._depth -= 1
        if anchor is not None:
            self._sizes[anchor] = self._nodes - before
        return node

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        # Python refuses some values YAML's grammar allows (an int of 5,000 digits, the date
        # 2024-13-01): report them at their position like any other YAML error.
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError, TypeError) as exc:
            raise yaml.constructor.ConstructorError(
                problem=f"cannot read this {node.tag.rpartition(':')[2]} value: {_clip(exc, 100)}",
                problem_mark=node.start_mark,
            ) from None


def _clip(text: object, limit: int = 200) -> str:
    text = str(text)
    return text if len(text) <= limit else text[:limit] + "..."


def _yaml_error(exc: yaml.YAMLError, text: str, source: str, document: int) -> CatalogError:
    if isinstance(exc, yaml.reader.ReaderError):
        # Raised before parsing starts: the document is found from the position.
        position = int(exc.position)
        line, column = _line_column(text, position)
        return CatalogError(
            f"{source} document {_document_at(text, position)}: line {line}, column {column}: "
            f"character U+{int(exc.character):04X} is not allowed in YAML (write control "
            "characters as escapes in a double-quoted string)"
        )
    where = f"{source} document {document}"
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = ", ".join(_clip(part) for part in (exc.context, exc.problem) if part)
        hint = " (indent with spaces: YAML does not allow tabs)" if "'\\t'" in what else ""
        kind = "" if isinstance(exc, _YAMLLimit) else "not valid YAML: "
        return CatalogError(f"{where}: {at}{kind}{what}{hint}")
    return CatalogError(f"{where}: not valid YAML: {_clip(exc)}")


def _line_column(text: str, position: int) -> tuple[int, int]:
    head = text[:position]
    return head.count("\n") + 1, position - (head.rfind("\n") + 1) + 1


_DOCUMENT_START = re.compile(r"^---(?=\s|$)", re.MULTILINE)


def _document_at(text: str, position: int) -> int:
    """The number of the YAML document holding `position`, for errors found before parsing."""
    head = text[:position]
    starts = [m.start() for m in _DOCUMENT_START.finditer(head)]
    preamble = head[: starts[0]] if starts else head
    implicit = any(
        line.strip() and not line.lstrip().startswith(("#", "%")) for line in preamble.splitlines()
    )
    return max(1, len(starts) + implicit)


def _decode(data: str | bytes, source: str, max_bytes: int) -> str:
    size = len(data.encode("utf-8", "surrogatepass")) if isinstance(data, str) else len(data)
    if size > max_bytes:
        raise CatalogError(
            f"{source}: the file is {size} bytes, more than CATALOG_MAX_BYTES={max_bytes}; "
            "split it or raise the limit"
        )
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        head = data[: exc.start].decode("utf-8-sig")
        line, column = _line_column(head, len(head))
        raise CatalogError(
            f"{source} document {_document_at(head, len(head))}: line {line}, column {column}: "
            f"byte 0x{data[exc.start]:02x} is not UTF-8 (catalog files are UTF-8; "
            "convert it, e.g. iconv -f latin1 -t utf-8)"
        ) from None


def load_documents(
    data: str | bytes, source: str = "catalog", max_bytes: int = DEFAULT_MAX_BYTES
) -> list[tuple[int, Any]]:
    """Each YAML document of a catalog file with its number (from 1), within the loader's bounds."""
    text = _decode(data, source, max_bytes)
    documents: list[tuple[int, Any]] = []
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text)  # refuses non-printable characters right away
        while loader.check_node():
            node = loader.get_node()
            documents.append((loader.document, loader.construct_document(node)))
    except yaml.YAMLError as exc:
        number = max(loader.document, 1) if loader is not None else 1
        raise _yaml_error(exc, text, source, number) from None
    finally:
        if loader is not None:
            loader.dispose()
    if not documents:
        raise CatalogError(f"{source}: the file is empty (no YAML document)")
    return documents


KINDS = {"Group", "Component", "Domain", "System"}


def parse_catalog(
    text: str | bytes,
    source: str = "catalog",
    max_bytes: int = DEFAULT_MAX_BYTES,
    *,
    budget_max_usd: float = BUDGET_MAX_USD,
    currency: str = "USD",
) -> tuple[list[TeamEntity], list[ComponentEntity], list[str]]:
    """Teams, components and skipped documents (parse_entities has every kind)."""
    found = parse_entities(
        text, source, max_bytes, budget_max_usd=budget_max_usd, currency=currency
    )
    return found.teams, found.components, found.skipped


def parse_entities(
    text: str | bytes,
    source: str = "catalog",
    max_bytes: int = DEFAULT_MAX_BYTES,
    *,
    budget_max_usd: float = BUDGET_MAX_USD,
    currency: str = "USD",
) -> Catalog:
    """`currency` is COST_CURRENCY, the currency of the budgets the annotations set."""
    found = Catalog()
    teams, components, skipped = found.teams, found.components, found.skipped
    for index, doc in load_documents(text, source, max_bytes):
        if doc is None:
            continue
        where = f"{source} document {index}"
        if not isinstance(doc, dict):
            raise CatalogError(
                f"{where}: expected a mapping with kind and metadata, got {_show(doc)}"
            )
        kind = doc.get("kind")
        if kind is None:
            raise CatalogError(f"{where}: field kind is missing")
        if not isinstance(kind, str):
            raise CatalogError(f"{where}: field kind must be a string, got {_show(kind)}")
        if kind not in KINDS:
            skipped.append(f"{where}: kind {kind if len(kind) <= MAX_ECHO else _show(kind)}")
            continue
        metadata = _mapping(doc, "metadata", where)
        name = metadata.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise CatalogError(
                f"{where} ({kind}): field metadata.name is missing or not a valid name "
                f"(1-63 letters, digits, '.', '_', '-'), got {_show(name)}"
            )
        where = f"{where} ({kind} {name})"
        namespace = metadata.get("namespace", "default")
        if not isinstance(namespace, str) or not NAME_RE.match(namespace):
            raise CatalogError(
                f"{where}: field metadata.namespace is not a valid name, got {_show(namespace)}"
            )
        ref = entity_ref(kind, namespace, name)
        ident = _uid(metadata, ref, where)
        spec = _mapping(doc, "spec", where)
        if kind == "Group":
            team = _team(metadata, spec, ident, ref, namespace, name, where)
            budget = _budget_spec(_annotations(metadata, where), where, budget_max_usd, currency)
            teams.append(replace(team, budget=budget))
            continue
        if kind in {"Domain", "System"}:
            title = _title(metadata, name, where)
            slug = _entity_slug(namespace, name, where, kind.lower())
            owner = _reference(
                spec.get("owner"), namespace, "group", where, "spec.owner", required=True
            )
            assert owner is not None
            if kind == "Domain":
                found.domains.append(DomainEntity(ident, ref, title, slug, owner, where=where))
            else:
                domain = _reference(
                    spec.get("domain"), namespace, "domain", where, "spec.domain", required=False
                )
                found.systems.append(
                    SystemEntity(ident, ref, title, slug, owner, domain, where=where)
                )
            continue
        owner = _text(spec.get("owner"), where, "spec.owner", REF_MAX)
        if not owner.strip():
            raise CatalogError(f"{where}: field spec.owner is missing")
        system = _reference(
            spec.get("system"), namespace, "system", where, "spec.system", required=False
        )
        annotations = _annotations(metadata, where)
        budget = _budget_spec(annotations, where, budget_max_usd, currency)
        components.append(
            ComponentEntity(
                id=ident,
                ref=ref,
                name=name,
                owner_ref=owner_ref(owner.strip(), namespace),
                budget_usd=budget.amount
                if budget is not None and budget.period is Period.ROLLING_30_DAYS
                else None,
                aggregate=_checked(
                    check_aggregate,
                    annotations.get(ANNOTATION_AGGREGATE, DEFAULT_AGGREGATE),
                    where,
                    ANNOTATION_AGGREGATE,
                    200,  # Component.opencost_aggregate
                ),
                key=_checked(
                    check_key, annotations.get(ANNOTATION_KEY), where, ANNOTATION_KEY, 1000
                ),
                where=where,
                system_ref=system,
                budget=budget,
            )
        )
    _refuse_duplicates(teams, "team")
    _refuse_duplicates(components, "component")
    _refuse_duplicates(found.domains, "domain")
    _refuse_duplicates(found.systems, "system")
    _one_component_per_selector(components, source)
    return found


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


def _team(
    metadata: dict[str, Any],
    spec: dict[str, Any],
    ident: uuid.UUID,
    ref: str,
    namespace: str,
    name: str,
    where: str,
) -> TeamEntity:
    title, title_field = metadata.get("title"), "metadata.title"
    if title is None or title == "":
        profile = spec.get("profile")
        if profile is not None and not isinstance(profile, dict):
            raise CatalogError(f"{where}: field spec.profile must be a mapping")
        title, title_field = (profile or {}).get("displayName"), "spec.profile.displayName"
    if title is None or title == "":
        title = name
    title = _checked_title(title, where, title_field)
    slug = _entity_slug(namespace, name, where, "team")
    parent = _reference(
        spec.get("parent"), namespace, "group", where, "spec.parent", required=False
    )
    raw_children = spec.get("children")
    if raw_children is not None and not isinstance(raw_children, list):
        raise CatalogError(
            f"{where}: field spec.children must be a list, got {_show(raw_children)}"
        )
    children: list[str] = []
    for i, child in enumerate(raw_children or []):
        ref_i = _reference(child, namespace, "group", where, f"spec.children[{i}]", required=True)
        assert ref_i is not None
        if ref_i in children:
            raise CatalogError(f"{where}: field spec.children lists {ref_i} twice")
        children.append(ref_i)
    return TeamEntity(
        ident, ref, title, slug, where=where, parent_ref=parent, children_refs=tuple(children)
    )


def _title(metadata: dict[str, Any], name: str, where: str) -> str:
    title = metadata.get("title")
    if title is None or title == "":
        return name
    return _checked_title(title, where, "metadata.title")


def _checked_title(title: object, where: str, title_field: str) -> str:
    text = _text(title, where, title_field, 200)
    try:
        return check_name(text)
    except InvalidInput:
        raise CatalogError(f"{where}: field {title_field} is blank") from None


def _entity_slug(namespace: str, name: str, where: str, what: str) -> str:
    slug = _slug(namespace, name)
    if len(slug) > SLUG_MAX:
        raise CatalogError(
            f"{where}: fields metadata.namespace and metadata.name make the {what} slug "
            f"{_show(slug)}, longer than {SLUG_MAX} characters"
        )
    return slug


Entity = TeamEntity | ComponentEntity | DomainEntity | SystemEntity


def _refuse_duplicates(entities: list[Any], what: str) -> None:
    """One import may hold each entity once: a second copy would silently overwrite the first."""
    seen: dict[tuple[str, str], Entity] = {}
    for entity in entities:
        keys = [("entity ref", entity.ref.lower()), ("metadata.uid", str(entity.id))]
        if not isinstance(entity, ComponentEntity):
            keys.append((f"{what} slug", entity.slug))
        for key in keys:
            first = seen.setdefault(key, entity)
            if first is not entity:
                raise CatalogError(
                    f"{entity.where}: same {key[0]} as {first.where} ({_show(key[1])}); "
                    f"a {what} may appear once per import"
                )


def _text(value: object, where: str, name: str, max_chars: int) -> str:
    """A string field, refused (naming it) if it is another type, too long, or unstorable."""
    if value is None:
        raise CatalogError(f"{where}: field {name} is missing")
    if not isinstance(value, str):
        raise CatalogError(f"{where}: field {name} must be a string, got {_show(value)}")
    if len(value) > max_chars:
        raise CatalogError(
            f"{where}: field {name} is {len(value)} characters, more than {max_chars}"
        )
    bad = UNSTORABLE.search(value)
    if bad is not None:
        raise CatalogError(
            f"{where}: field {name} contains the character U+{ord(bad.group()):04X} "
            f"at position {bad.start() + 1}, which cannot be stored"
        )
    return value


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
        return uuid.UUID(_text(uid, where, "metadata.uid", 100))
    except (ValueError, CatalogError):
        raise CatalogError(f"{where}: field metadata.uid is not a UUID: {_show(uid)}") from None


def _budget(raw: object, where: str, maximum: float) -> float | None:
    if raw is None:
        return None
    try:
        if isinstance(raw, bool) or not isinstance(raw, int | float | str):
            raise ValueError
        return check_budget(float(raw), maximum)
    except InvalidInput as exc:
        raise CatalogError(f"{where}: annotation {ANNOTATION_BUDGET}: {exc}") from None
    except (ValueError, OverflowError):
        raise CatalogError(
            f"{where}: annotation {ANNOTATION_BUDGET} must be a number >= 0, got {_show(raw)}"
        ) from None


def _annotations(metadata: dict[str, Any], where: str) -> dict[str, Any]:
    annotations = metadata.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise CatalogError(f"{where}: field metadata.annotations must be a mapping")
    return annotations


def _budget_spec(
    annotations: dict[str, Any], where: str, maximum: float, currency: str
) -> BudgetSpec | None:
    """The finops.io/budget-* annotations of a Component or a Group: an amount (in
    COST_CURRENCY, as finops.io/budget-usd always was, whatever its name says), and optionally
    its period and thresholds (which need the amount)."""
    amount = _budget(annotations.get(ANNOTATION_BUDGET), where, maximum)
    raw_period = annotations.get(ANNOTATION_BUDGET_PERIOD)
    raw_thresholds = annotations.get(ANNOTATION_BUDGET_THRESHOLDS)
    if amount is None:
        for name, raw in (
            (ANNOTATION_BUDGET_PERIOD, raw_period),
            (ANNOTATION_BUDGET_THRESHOLDS, raw_thresholds),
        ):
            if raw is not None:
                raise CatalogError(
                    f"{where}: annotation {name} needs the annotation {ANNOTATION_BUDGET} "
                    "(the budget's amount)"
                )
        return None
    period = Period.ROLLING_30_DAYS
    if raw_period is not None:
        period = _checked(parse_period, raw_period, where, ANNOTATION_BUDGET_PERIOD, 100)
    thresholds = DEFAULT_THRESHOLDS
    if raw_thresholds is not None:
        if isinstance(raw_thresholds, int | float) and not isinstance(raw_thresholds, bool):
            raw_thresholds = str(raw_thresholds)  # a single ratio, written as a YAML number
        thresholds = _checked(
            parse_thresholds, raw_thresholds, where, ANNOTATION_BUDGET_THRESHOLDS, 1000
        )
    return BudgetSpec(amount, currency, period, thresholds)


def _checked(check: Any, raw: object, where: str, annotation: str, max_chars: int) -> Any:
    if raw is not None:
        _text(raw, where, f"metadata.annotations[{annotation}]", max_chars)
    try:
        return check(raw)
    except InvalidInput as exc:
        raise CatalogError(f"{where}: annotation {annotation}: {exc}") from None


async def import_catalog(
    text: str | bytes,
    source: str = "catalog",
    max_bytes: int = DEFAULT_MAX_BYTES,
    *,
    budget_max_usd: float = BUDGET_MAX_USD,
    currency: str = "USD",
) -> ImportResult:
    found = parse_entities(
        text, source, max_bytes, budget_max_usd=budget_max_usd, currency=currency
    )
    try:
        return await _write(found, source)
    except IntegrityError:
        # The checks below passed, so a concurrent writer took a slug, id or selector meanwhile.
        raise CatalogError(
            f"{source}: a slug, id or OpenCost selector in this file was claimed by a "
            "concurrent change; nothing was imported, run the import again"
        ) from None


RefModel = type[Team] | type[Domain] | type[System]


async def _stored(model: RefModel, ref: str) -> uuid.UUID | None:
    """An entity imported earlier: by its stable id, or by slug if it carried a uid."""
    namespace, _, name = ref.partition(":")[2].partition("/")
    match = Q(id=stable_id(ref))
    slug = _slug(namespace, name)
    if 0 < len(slug) <= SLUG_MAX:
        match |= Q(slug=slug)
    row = await model.filter(match).only("id").first()
    return uuid.UUID(str(row.id)) if row is not None else None


async def _resolve(
    model: RefModel, ref: str, in_file: dict[str, uuid.UUID], where: str, name: str
) -> uuid.UUID:
    found = in_file.get(ref)
    if found is None:
        found = await _stored(model, ref)
    if found is None:
        kind = model.__name__.lower()
        raise CatalogError(
            f"{where}: field {name} {ref} is not a {ref.partition(':')[0].capitalize()} "
            f"in this file or an already imported {kind}"
        )
    return found


async def _upsert_named(
    model: type[Domain] | type[System],
    entity: DomainEntity | SystemEntity,
    values: dict[str, Any],
) -> None:
    what = model.__name__.lower()
    clash = await model.filter(slug=entity.slug).exclude(id=entity.id).only("id").first()
    if clash is not None:
        raise CatalogError(
            f"{entity.where or entity.ref}: metadata.name gives the slug {entity.slug!r}, "
            f"which belongs to another {what}"
        )
    await model.update_or_create(
        id=entity.id, defaults={"name": entity.name, "slug": entity.slug, **values}
    )


async def _write(found: Catalog, source: str) -> ImportResult:
    teams, components = found.teams, found.components
    result = ImportResult(skipped=found.skipped)
    team_ids = {t.ref: t.id for t in teams}
    domain_ids = {d.ref: d.id for d in found.domains}
    system_ids = {s.ref: s.id for s in found.systems}
    in_file = [c.id for c in components]
    async with in_transaction() as conn:
        for team in teams:
            clash = await Team.filter(slug=team.slug).exclude(id=team.id).first()
            if clash is not None:
                raise CatalogError(
                    f"{team.where or team.ref}: metadata.name gives the slug {team.slug!r}, "
                    "which belongs to another team"
                )
            await Team.update_or_create(id=team.id, defaults={"name": team.name, "slug": team.slug})
            result.teams += 1
        await _write_tree(teams, team_ids)
        for domain in found.domains:
            owner = await _resolve(Team, domain.owner_ref, team_ids, domain.where, "spec.owner")
            await _upsert_named(Domain, domain, {"owner_id": owner})
            result.domains += 1
        for system in found.systems:
            owner = await _resolve(Team, system.owner_ref, team_ids, system.where, "spec.owner")
            domain_id = None
            if system.domain_ref is not None:
                domain_id = await _resolve(
                    Domain, system.domain_ref, domain_ids, system.where, "spec.domain"
                )
            await _upsert_named(System, system, {"owner_id": owner, "domain_id": domain_id})
            result.systems += 1
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
        # Owners before the import, to move the cost of components that change team; systems
        # too, for the team x system daily totals of components that change system.
        stored = await Component.filter(id__in=in_file).values_list("id", "team_id", "system_id")
        owners_before = {str(cid): str(tid) for cid, tid, _ in stored}
        systems_before = {str(cid): None if sid is None else str(sid) for cid, _, sid in stored}
        moved: set[uuid.UUID] = set()
        for component in components:
            owner_id = team_ids.get(component.owner_ref)
            if owner_id is None:
                owner_id = await _stored(Team, component.owner_ref)
            if owner_id is None:
                raise CatalogError(
                    f"{component.where or component.ref}: field spec.owner "
                    f"{component.owner_ref} is not a Group "
                    "in this file or an already imported team"
                )
            system_id = None
            if component.system_ref is not None:
                system_id = await _resolve(
                    System, component.system_ref, system_ids, component.where, "spec.system"
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
                    "system_id": system_id,
                    "budget_usd": component.budget_usd,
                    "opencost_aggregate": component.aggregate,
                    "opencost_key": component.key,
                },
            )
            before = owners_before.get(str(component.id))
            if before is not None and before != str(owner_id):
                moved.update((uuid.UUID(before), uuid.UUID(str(owner_id))))
            if str(component.id) in systems_before and systems_before[str(component.id)] != (
                None if system_id is None else str(system_id)
            ):
                moved.add(uuid.UUID(str(owner_id)))
            result.components += 1
        await _write_budgets(found)
        if moved:
            # Same transaction: the teams' daily totals (and team x system) follow their
            # components.
            await explorer.refresh_daily_totals(team_ids=sorted(moved), platform=False)
        await dataversion.bump()
    return result


async def _write_budgets(found: Catalog) -> None:
    """The file is the truth for the budgets of what it holds: each entity's budget becomes its
    annotations' (none without them), in four statements whatever the file's size. Component
    budget_usd mirrors were written with the components."""
    component_ids = [c.id for c in found.components]
    team_ids = [t.id for t in found.teams]
    if component_ids:
        await Budget.filter(component_id__in=component_ids).delete()
    if team_ids:
        await Budget.filter(team_id__in=team_ids).delete()
    owned: list[tuple[str, uuid.UUID, BudgetSpec | None]] = [
        *(("component_id", c.id, c.budget) for c in found.components),
        *(("team_id", t.id, t.budget) for t in found.teams),
    ]
    rows = [
        Budget(
            **{column: subject},
            amount=spec.amount,
            currency=spec.currency,
            period=spec.period.value,
            thresholds=list(spec.thresholds),
        )
        for column, subject, spec in owned
        if spec is not None
    ]
    if rows:
        await Budget.bulk_create(rows)


async def _write_tree(teams: list[TeamEntity], team_ids: dict[str, uuid.UUID]) -> None:
    """Set each team's parent from spec.parent and from its parent's spec.children.

    A Group of the file has the parent its file gives it (none if neither spelling names one);
    a child listed in spec.children may be a team imported earlier. Both spellings may appear,
    and must not name two different parents. The tree that results (stored teams included) must
    have no cycle. Runs inside the import's transaction, after the teams are written."""
    # team id -> (parent id or None, the document and field that said so)
    said: dict[uuid.UUID, tuple[uuid.UUID | None, str]] = {t.id: (None, "") for t in teams}
    for team in teams:
        if team.parent_ref is not None:
            parent = await _resolve(Team, team.parent_ref, team_ids, team.where, "spec.parent")
            said[team.id] = (parent, f"{team.where}: field spec.parent")
    for team in teams:
        for i, child_ref in enumerate(team.children_refs):
            field_name = f"spec.children[{i}]"
            child = await _resolve(Team, child_ref, team_ids, team.where, field_name)
            claim = f"{team.where}: field {field_name}"
            before, source = said.get(child, (None, ""))
            if before is not None and before != team.id:
                raise CatalogError(
                    f"{claim} makes {child_ref} a child of {team.ref}, but {source} names "
                    "another parent; a Group has one parent"
                )
            said[child] = (team.id, source or claim)
    if not said:
        return
    # The whole stored tree, with this file's changes over it: a cycle may go through teams
    # the file does not mention. One narrow row per team.
    rows = await Team.all().values_list("id", "parent_id", "slug")
    parents: dict[uuid.UUID, uuid.UUID | None] = {}
    slugs: dict[uuid.UUID, str] = {}
    for tid, pid, slug in rows:
        key = uuid.UUID(str(tid))
        parents[key] = uuid.UUID(str(pid)) if pid is not None else None
        slugs[key] = str(slug)
    for tid, (pid, _) in said.items():
        parents[tid] = pid
    for start in said:
        path: list[uuid.UUID] = []
        node: uuid.UUID | None = start
        while node is not None and node not in path:
            path.append(node)
            node = parents.get(node)
        if node is not None:  # came back to a team on the path
            cycle = [*path[path.index(node) :], node]
            where = next((said[t][1] for t in cycle if said.get(t, (None, ""))[1]), "")
            raise CatalogError(
                f"{where}: the group tree would have a cycle: "
                f"{' -> '.join(slugs.get(t, str(t)) for t in cycle)} (a team cannot be "
                "its own ancestor)"
            )
    for tid, (pid, _) in said.items():
        await Team.filter(id=tid).update(parent_id=pid)
