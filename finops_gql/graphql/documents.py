"""Bounds on a GraphQL document, enforced before graphql-core spends time on it.

The lexer is pure Python: a 1 MB comment costs 0.1 s to skip, so the document has its own size
bound, well under the body's (which also carries variables).

Parsing is linear in the document, but validation is not: OverlappingFieldsCanBeMerged compares
every pair of fields with one response name, so 200 copies of one field cost 0.2 s and 2,000
conflicting ones 4 s. So the document is refused by size (bytes), by lexical tokens (inside
graphql-core's parser, which stops counting at the limit) and by field selections (counted on the
parsed tree, before validation runs).

The parse/validation cache lives here too, bounded by entries, and large documents never enter
it: 300 distinct 1 MB documents kept 540 MB alive in Strawberry's ParserCache/ValidationCache.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from graphql import ASTValidationRule, GraphQLError, GraphQLSchema, parse, validate
from graphql.language import (
    DocumentNode,
    ExecutableDefinitionNode,
    FieldNode,
    OperationDefinitionNode,
    SelectionSetNode,
)
from strawberry.schema.schema import validate_document
from strawberry.types import ExecutionContext

from finops_gql.config import Settings
from finops_gql.graphql.cost import document_cost

DOCUMENT_TOO_LARGE = "DOCUMENT_TOO_LARGE"
MULTIPLE_OPERATIONS = "Must provide operation name if query contains multiple operations."


def _too_large(message: str, variable: str, limit: int) -> GraphQLError:
    return GraphQLError(
        f"{message} (limit {variable}={limit})",
        extensions={"code": DOCUMENT_TOO_LARGE, "limit": variable, "value": limit},
    )


def count_fields(document: DocumentNode, stop_after: int) -> int:
    """Field selections written in the document (fragments counted once), stopping past a bound."""
    count = 0
    stack: list[SelectionSetNode] = [
        d.selection_set for d in document.definitions if isinstance(d, ExecutableDefinitionNode)
    ]
    while stack and count <= stop_after:
        for selection in stack.pop().selections:
            if isinstance(selection, FieldNode):
                count += 1
            sub = getattr(selection, "selection_set", None)
            if sub is not None:
                stack.append(sub)
    return count


# Validation rule classes built once for the app (the depth and alias limits): cached with the
# specified rules, since the same class object comes back on every request.
_STABLE_RULES: set[type[ASTValidationRule]] = set()


def stable_rules(*rules: type[ASTValidationRule]) -> list[type[ASTValidationRule]]:
    """Mark rule classes made once (not per request) as cacheable per document; such a rule
    must depend on the document alone, not on variables."""
    _STABLE_RULES.update(rules)
    return list(rules)


@dataclass
class _Entry:
    document: DocumentNode
    validated: dict[tuple[type[ASTValidationRule], ...], list[GraphQLError]] = field(
        default_factory=dict
    )
    # The query cost by (schema, operation name, variables as normalized JSON): a frontend sends
    # the same few variable sets; at most COSTS_PER_DOCUMENT are kept, the oldest dropped first.
    costs: dict[tuple[GraphQLSchema, str | None, bytes], int] = field(default_factory=dict)


COSTS_PER_DOCUMENT = 32


class DocumentGuard:
    """Per app: the document limits from Settings and one LRU cache of parsed, validated documents."""

    def __init__(self, settings: Settings) -> None:
        self.max_body_bytes = settings.graphql_max_body_bytes
        self.max_bytes = settings.graphql_max_document_bytes
        self.max_tokens = settings.graphql_max_tokens
        self.max_fields = settings.graphql_max_fields
        self.cache_size = settings.graphql_cache_size
        self.cache_max_bytes = settings.graphql_cache_max_document_bytes
        self._cache: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._cache)

    def __contains__(self, query: object) -> bool:
        return query in self._cache

    def parse(self, query: str) -> DocumentNode:
        entry = self._cache.get(query)
        if entry is not None:
            self._cache.move_to_end(query)
            return entry.document
        size = len(query.encode("utf-8", "surrogatepass"))
        if size > self.max_bytes:
            raise _too_large(
                f"The document is {size} bytes", "GRAPHQL_MAX_DOCUMENT_BYTES", self.max_bytes
            )
        try:
            document = parse(
                query, max_lexical_tokens=self.max_tokens, max_comments=self.max_tokens
            )
        except GraphQLError as exc:
            if "Parsing aborted" in exc.message:
                raise _too_large(
                    "The document has too many tokens or comments",
                    "GRAPHQL_MAX_TOKENS",
                    self.max_tokens,
                ) from None
            raise
        fields = count_fields(document, self.max_fields)
        if fields > self.max_fields:
            raise _too_large(
                f"The document selects more than {self.max_fields} fields",
                "GRAPHQL_MAX_FIELDS",
                self.max_fields,
            )
        if self.cache_size > 0 and size <= self.cache_max_bytes:
            self._cache[query] = _Entry(document)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return document

    def cost(
        self,
        schema: GraphQLSchema,
        query: str | None,
        document: DocumentNode,
        variables: Mapping[str, Any] | None,
        operation_name: str | None,
    ) -> int:
        """document_cost, remembered with the cached document: it is a function of the schema,
        the document, the variables and the operation name alone."""
        entry = self._cache.get(query) if query is not None else None
        variables_json = variables_key(variables) if entry is not None else None
        if entry is None or entry.document is not document or variables_json is None:
            return document_cost(schema, document, variables, operation_name)
        key = (schema, operation_name, variables_json)
        found = entry.costs.get(key)
        if found is None:
            found = entry.costs[key] = document_cost(schema, document, variables, operation_name)
            while len(entry.costs) > COSTS_PER_DOCUMENT:
                del entry.costs[next(iter(entry.costs))]
        return found

    def validate(
        self,
        schema: GraphQLSchema,
        query: str | None,
        document: DocumentNode,
        rules: tuple[type[ASTValidationRule], ...],
    ) -> list[GraphQLError]:
        # Extensions such as QueryDepthLimiter build their rule class per request: caching on
        # those would never hit and would grow each entry. They are cheap (linear), so they run
        # every time; the specified rules (OverlappingFieldsCanBeMerged is the costly one) are
        # module-level classes and are cached, and so are rules made once (stable_rules).
        static, per_request = _split(rules)
        entry = self._cache.get(query) if query is not None else None
        if entry is not None and entry.document is not document:
            entry = None
        errors = entry.validated.get(static) if entry is not None else None
        if errors is None:
            errors = validate_document(schema, document, static)
            if entry is not None:
                entry.validated[static] = errors
        if per_request:
            return [*errors, *validate(schema, document, per_request)]
        return list(errors)


# The split of each rule set seen (the same one or two on every request); a set holding a rule
# made per request is split anew each time, not kept.
_SPLITS: dict[tuple[type[ASTValidationRule], ...], tuple[tuple[type[ASTValidationRule], ...], ...]]
_SPLITS = {}


def _split(
    rules: tuple[type[ASTValidationRule], ...],
) -> tuple[tuple[type[ASTValidationRule], ...], ...]:
    """(the rules whose verdict may be cached with the document, those run every time)."""
    found = _SPLITS.get(rules)
    if found is None:
        static = tuple(r for r in rules if r in _STABLE_RULES or "<locals>" not in r.__qualname__)
        found = (static, tuple(r for r in rules if r not in static))
        if not found[1] and len(_SPLITS) < 64:
            _SPLITS[rules] = found
    return found


def variables_key(variables: object) -> bytes | None:
    """The variables, normalized (keys sorted); None when they cannot be (the view refuses them
    on the normal path)."""
    if variables is None:
        return b""
    if not isinstance(variables, dict):
        return None
    try:
        return orjson.dumps(variables, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # pragma: no cover - values parsed from JSON always serialize
        return None


def check_operation_name(document: DocumentNode, operation_name: str | None) -> None:
    """The spec's GetOperation: several operations and no name is an error, not "the first one"."""
    if operation_name is not None:
        return
    operations = sum(isinstance(d, OperationDefinitionNode) for d in document.definitions)
    if operations > 1:
        raise GraphQLError(MULTIPLE_OPERATIONS, extensions={"code": "GRAPHQL_VALIDATION_FAILED"})


_DEFAULT_GUARD: DocumentGuard | None = None


def default_guard() -> DocumentGuard:
    """For a schema executed without the app's context (scripts, direct schema.execute)."""
    global _DEFAULT_GUARD
    if _DEFAULT_GUARD is None:
        _DEFAULT_GUARD = DocumentGuard(Settings())
    return _DEFAULT_GUARD


def _guard_of(execution: ExecutionContext) -> DocumentGuard:
    guard = getattr(execution.context, "documents", None)
    return guard if isinstance(guard, DocumentGuard) else default_guard()


def parse_bounded(execution: ExecutionContext) -> None:
    """The parse step (OperationGuard.on_parse): through the app's DocumentGuard, which bounds
    the document and caches it (instead of Strawberry's ParserCache)."""
    if execution.query and execution.graphql_document is None:
        execution.graphql_document = _guard_of(execution).parse(execution.query)
    if execution.graphql_document is not None:
        check_operation_name(execution.graphql_document, execution._provided_operation_name)


def validate_cached(execution: ExecutionContext) -> None:
    """The validation step (OperationGuard.on_validate): the DocumentGuard's cached verdict; as
    it sets pre_execution_errors, Strawberry's own validation does not run again."""
    if execution.graphql_document is not None and execution.pre_execution_errors is None:
        execution.pre_execution_errors = _guard_of(execution).validate(
            execution.schema._schema,
            execution.query,
            execution.graphql_document,
            execution.validation_rules,
        )
