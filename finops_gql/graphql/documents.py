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
from collections.abc import Iterator
from dataclasses import dataclass, field

from graphql import ASTValidationRule, GraphQLError, GraphQLSchema, parse, validate
from graphql.language import (
    DocumentNode,
    ExecutableDefinitionNode,
    FieldNode,
    OperationDefinitionNode,
    SelectionSetNode,
)
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document

from finops_gql.config import Settings

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
        static = tuple(r for r in rules if r in _STABLE_RULES or "<locals>" not in r.__qualname__)
        per_request = tuple(r for r in rules if r not in static)
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


def check_operation_name(document: DocumentNode, operation_name: str | None) -> None:
    """The spec's GetOperation: several operations and no name is an error, not "the first one"."""
    if operation_name is not None:
        return
    operations = sum(isinstance(d, OperationDefinitionNode) for d in document.definitions)
    if operations > 1:
        raise GraphQLError(MULTIPLE_OPERATIONS, extensions={"code": "GRAPHQL_VALIDATION_FAILED"})


_DEFAULT_GUARD: DocumentGuard | None = None


def _default_guard() -> DocumentGuard:
    """For a schema executed without the app's context (scripts, direct schema.execute)."""
    global _DEFAULT_GUARD
    if _DEFAULT_GUARD is None:
        _DEFAULT_GUARD = DocumentGuard(Settings())
    return _DEFAULT_GUARD


class DocumentLimits(SchemaExtension):
    """Parses and validates through the app's DocumentGuard (replaces ParserCache/ValidationCache)."""

    def _guard(self) -> DocumentGuard:
        guard = getattr(self.execution_context.context, "documents", None)
        return guard if isinstance(guard, DocumentGuard) else _default_guard()

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if context.query and context.graphql_document is None:
            context.graphql_document = self._guard().parse(context.query)
        if context.graphql_document is not None:
            check_operation_name(context.graphql_document, context._provided_operation_name)
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        if context.graphql_document is not None and context.pre_execution_errors is None:
            context.pre_execution_errors = self._guard().validate(
                context.schema._schema,
                context.query,
                context.graphql_document,
                context.validation_rules,
            )
        yield
