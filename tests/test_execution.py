"""The executor's fast path for plain scalar fields answers exactly as graphql-core does.

Each document runs on two copies of one schema, one with FastExecutor and one with Strawberry's
own executor, and the answers (data, error messages, paths, locations) must be equal, including
the awkward cases: nulls in non-null fields and their propagation, values a scalar refuses,
exceptions and awaitables held in attributes, aliases, fragments, @skip/@include, __typename.
"""

from __future__ import annotations

import asyncio
import enum
import math
from typing import Any

import pytest
import strawberry
from strawberry.extensions import SchemaExtension

from finops_gql.graphql.execution import PRELOADED, FastExecutor, lean_resolvers


class Later:
    """An awaitable attribute value (not a coroutine: unawaited, it warns of nothing)."""

    def __await__(self) -> Any:
        yield from asyncio.sleep(0).__await__()
        return "later"


class Row:
    """A source object: attributes may hold anything, as a bug in a service could leave them."""

    def __init__(self, name: Any, label: Any = None, score: Any = 1.5, **more: Any) -> None:
        self.name = name
        self.label = label
        self.score = score
        self.tags = more.get("tags", ["a", "b"])
        self.child = more.get("child")
        self.held = more.get("held")  # Item.owner's value when set (PRELOADED)
        self.kids = more.get("kids", [])


class LaterRow:
    """An awaitable list item."""

    def __init__(self, row: Row) -> None:
        self.row = row

    def __await__(self) -> Any:
        yield from asyncio.sleep(0).__await__()
        return self.row


@strawberry.enum
class Mode(enum.Enum):
    UP = "up"
    SAME = "same"


@strawberry.input
class Extra:
    amount: int = 0


@strawberry.type
class Item:
    name: str
    label: str | None
    score: float
    tags: list[str]
    child: Item | None = None

    @strawberry.field
    def upper(self) -> str:
        return self.name.upper()

    @strawberry.field
    def where(self, info: strawberry.Info) -> str | None:
        if self.name == "d":
            raise ValueError("no where for d")
        return f"{info.path.key}:{info.field_name}:{self.name}"

    @strawberry.field
    def named(self, info: strawberry.Info) -> str:
        return self.name  # None for the row without one: a null in a non-null field

    @strawberry.field(metadata={PRELOADED: "held"})
    def owner(self, info: strawberry.Info) -> Item:
        held = getattr(self, "held", None)
        if held is not None:
            return held  # type: ignore[no-any-return]
        return Row(f"owner-of-{self.name}:{info.path.key}")  # type: ignore[return-value]

    @strawberry.field
    def kids(self) -> list[Item]:
        return getattr(self, "kids", [])  # type: ignore[no-any-return]

    # Arguments passed as graphql-core coerced them (lean), and some Strawberry converts.
    @strawberry.field
    def scaled(
        self,
        info: strawberry.Info,
        by_count: int = 2,
        suffix: str | None = None,
        mode: Mode = Mode.UP,
        ref: strawberry.ID | None = None,
        ratio: float | None = None,
    ) -> str:
        name = str(self.name).upper() if mode is Mode.UP else str(self.name)
        return f"{name * by_count}{suffix}:{ref!r}:{ratio!r}:{info.field_name}"

    @strawberry.field
    async def later(self, times: int) -> str:
        await asyncio.sleep(0)
        if times < 0:
            raise ValueError("times must not be negative")
        return str(self.name) * times

    @strawberry.field
    def total(self, values: list[int], extra: Extra | None = None) -> int:
        return sum(values) + (extra.amount if extra is not None else 0)


def rows() -> list[Row]:
    return [
        Row("a", label="x", child=Row("a-child"), held=Row("a-owner"), kids=[Row("k1")]),
        Row(None, held=Row(None)),  # a null in a non-null field: the item becomes null
        Row("c", score=math.nan),  # Float refuses NaN
        Row("d", label=ValueError("broken label"), held=Row("d-owner", score=math.inf)),
        Row("e", label=Later(), held=Row("e-owner", label=Later())),  # awaitables held
        Row("f", score=3, kids=[Row("k2", kids=[Row(None)]), Row("k3")]),
        Row("g", label=123, held=Row("g-owner", label=ValueError("broken owner"))),
    ]


def mixed() -> list[Any]:
    """List items that are not plain rows: null, an exception, an awaitable."""
    return [Row("m1"), None, ValueError("broken row"), LaterRow(Row("m4")), Row(None)]


@strawberry.type
class Query:
    @strawberry.field
    def items(self) -> list[Item | None]:
        return rows()  # type: ignore[return-value]

    @strawberry.field
    def strict(self) -> list[Item]:
        return rows()  # type: ignore[return-value]

    @strawberry.field
    async def one(self) -> Item | None:
        return Row("async", child=Row(None))  # type: ignore[return-value]

    @strawberry.field
    def mixed(self) -> list[Item | None]:
        return mixed()

    @strawberry.field
    def strict_mixed(self) -> list[Item] | None:
        return mixed()


DOCUMENTS = [
    "{ items { name label score tags upper } }",
    "{ items { where named w: where } one { where named } }",
    "{ strict { named } }",
    "{ items { n: name l: label s: score again: name } }",
    "{ items { ...F child { ...F } } } fragment F on Item { name score __typename }",
    "{ items { ... on Item { name } ... @skip(if: true) { label } label @include(if: false) } }",
    "query($s: Boolean!) { items { name @skip(if: $s) score } }",
    "{ strict { name } }",
    "{ strict { label } }",
    "{ one { name child { name label } } }",
    "{ one { child { name } } items { name } }",
    "{ __typename items { __typename } }",
    # object lists, row by row: null, exception and awaitable rows, nested lists
    "{ mixed { name score } }",
    "{ mixed { ...F } } fragment F on Item { n: name label }",
    "{ strictMixed { name } }",
    "{ items { kids { name kids { name } } } }",
    # a field the source may hold (PRELOADED), held or resolved, nulls and errors inside it
    "{ items { name owner { name label score } } }",
    "{ items { o: owner { n: name } owner { __typename owner { name } } } }",
    "query($s: Boolean!) { items { owner @skip(if: $s) { name } ... on Item { owner { label } } } }",
    "{ strict { owner { name } } mixed { owner { name } } }",
    # selections of basic fields and held objects only: run by a projector row by row, and by
    # the general path for a row whose values it cannot complete (null, NaN/inf, an exception,
    # an awaitable, an int for a Float, a number for a String, no held owner)
    "{ items { name score owner { name score label } } }",
    "{ strict { n: name l: label owner { s: score } } }",
    "{ mixed { name label owner { name } } strictMixed { score } }",
    "{ one { name label score } }",
    # resolvers with arguments: defaults, variables, enums, IDs, nulls, async, errors
    "{ items { scaled } one { scaled(byCount: 1) } }",
    'query($r: ID) { items { scaled(byCount: 3, suffix: "!", mode: SAME, ref: $r, ratio: 2) } }',
    "{ items { a: scaled(suffix: null, ratio: 0.5) later(times: 2) } }",
    "{ strict { later(times: -1) } one { later(times: 1) } }",
    "{ items { total(values: [1, 2]) t: total(values: 3, extra: {amount: 4}) } }",
]


def _answer(executor: type[Any] | None, document: str) -> tuple[Any, Any]:
    schema = strawberry.Schema(query=Query, execution_context_class=executor)
    if executor is FastExecutor:  # as the app's schema is built
        lean = lean_resolvers(schema)
        assert {"Item.where", "Item.owner", "Item.scaled", "Item.later", "Query.one"} <= set(lean)
        assert "Item.total" not in lean  # a list and an input object: Strawberry converts them

    async def run() -> Any:
        return await schema.execute(document, variable_values={"s": False, "r": "7"})

    result = asyncio.run(run())
    errors = sorted(
        (e.message, e.path, [(loc.line, loc.column) for loc in e.locations or []])
        for e in result.errors or []
    )
    return result.data, errors


@pytest.mark.parametrize("document", DOCUMENTS)
def test_fast_path_answers_as_graphql_core(document: str) -> None:
    fast = _answer(FastExecutor, document)
    assert fast == _answer(None, document)
    assert fast[0] is not None or fast[1]  # every document answers something


def test_fast_path_cases_are_the_awkward_ones() -> None:
    data, errors = _answer(FastExecutor, "{ items { name label score } }")
    assert data is not None
    items = data["items"]
    assert items[0] == {"name": "a", "label": "x", "score": 1.5}
    assert items[1] is None  # null name propagated to the nullable item
    assert items[2] is None  # so did NaN, refused by Float
    assert items[3] == {"name": "d", "label": None, "score": 1.5}
    assert items[4]["label"] == "later"
    assert items[5]["score"] == 3
    assert items[6]["label"] == "123"
    messages = {m: path for m, path, _ in errors}
    assert messages["Cannot return null for non-nullable field Item.name."] == ["items", 1, "name"]
    assert messages["broken label"] == ["items", 3, "label"]
    assert any(m.startswith("Float cannot represent non numeric value") for m in messages)


class Shout(SchemaExtension):
    """A per-field hook: with one, every field must reach it (no fast path)."""

    def resolve(self, _next: Any, root: Any, info: Any, *args: Any, **kwargs: Any) -> Any:
        value = _next(root, info, *args, **kwargs)
        return value.upper() if isinstance(value, str) else value


def test_a_resolve_hook_sees_every_field() -> None:
    schema = strawberry.Schema(
        query=Query, execution_context_class=FastExecutor, extensions=[Shout]
    )

    async def run() -> Any:
        return await schema.execute("{ items { name } }")

    result = asyncio.run(run())
    assert result.data is not None
    assert result.data["items"][0] == {"name": "A"}


def test_only_a_fast_executor_offers_itself_for_prerendered_rows() -> None:
    """graphql/rows.py collects a selection with the executor the context names: one that must
    run every field (a resolve hook) names none, even in a context an earlier one named itself
    in (a WebSocket's lives for many operations)."""

    class Ctx:
        def __init__(self) -> None:
            self.executor: Any = lambda: "an earlier operation's"
            self.seen: list[Any] = []

    @strawberry.type
    class Q:
        @strawberry.field
        def seen(self, info: strawberry.Info) -> bool:
            info.context.seen.append(info.context.executor())
            return True

    for extensions, fast in (([Shout], False), ([], True)):
        schema = strawberry.Schema(
            query=Q, execution_context_class=FastExecutor, extensions=extensions
        )
        context = Ctx()

        async def run(schema: Any = schema, context: Ctx = context) -> Any:
            return await schema.execute("{ seen }", context_value=context)

        assert asyncio.run(run()).errors is None
        assert isinstance(context.seen[0], FastExecutor) is fast
        if not fast:
            assert context.seen == [None]


def test_the_apps_row_resolvers_are_lean() -> None:
    from finops_gql.graphql.schema import schema

    fields = {
        name: field.resolve
        for name, field in schema._schema.type_map["Component"].fields.items()  # type: ignore[union-attr]
    }
    assert getattr(fields["team"], "__qualname__", "").startswith("_lean.")
    assert getattr(fields["system"], "__qualname__", "").startswith("_lean.")  # async
    query = schema._schema.query_type
    assert query is not None
    assert getattr(query.fields["components"].resolve, "__qualname__", "").startswith("_lean.")
    # A subscription's resolve maps its events (Strawberry's), never the resolver.
    events = schema._schema.subscription_type
    assert events is not None
    for field in events.fields.values():
        assert not getattr(field.resolve, "__qualname__", "").startswith("_lean.")


def test_held_values_and_object_rows_skip_resolve_info(monkeypatch: pytest.MonkeyPatch) -> None:
    """The paths above are taken: a held owner costs no resolve info (only the two rows that
    hold none call the resolver), and the rows of a list are not completed one by one."""
    built: list[str] = []
    original = FastExecutor.build_resolve_info

    def counting(self: Any, field_def: Any, nodes: Any, parent: Any, path: Any) -> Any:
        built.append(f"{parent.name}.{nodes[0].name.value}")
        return original(self, field_def, nodes, parent, path)

    monkeypatch.setattr(FastExecutor, "build_resolve_info", counting)
    data, errors = _answer(FastExecutor, "{ items { owner { name } } }")
    assert built == ["Query.items", "Item.owner", "Item.owner"]  # rows c and f hold no owner
    assert data is not None
    assert data["items"][0] == {"owner": {"name": "a-owner"}}
    assert data["items"][2] == {"owner": {"name": "owner-of-c:owner"}}
    assert [m for m, _, _ in errors] == ["Cannot return null for non-nullable field Item.name."]


def test_plain_selections_are_projected(monkeypatch: pytest.MonkeyPatch) -> None:
    """A selection of basic fields and held objects is answered by one projector call per
    object. Rows it cannot complete go the general way: b (a null name), c (NaN), d (an inf in
    its owner) and f (no held owner: the resolver makes one, which is projected in turn); an
    int for a Float is completed in the projector itself."""
    from finops_gql.graphql import execution

    answered: list[str] = []
    original = execution.compile_projector

    def counting(steps: Any, is_awaitable: Any) -> Any:
        project = original(steps, is_awaitable)

        def counted(source: Any) -> Any:
            result = project(source)
            answered.append(str(getattr(source, "name", "?")))
            return result

        return counted

    monkeypatch.setattr(execution, "compile_projector", counting)
    monkeypatch.setattr(execution, "_COMPILED", {})
    data, errors = _answer(FastExecutor, "{ items { name score owner { name score } } }")
    assert answered == ["a-owner", "a", "e-owner", "e", "owner-of-f:owner", "g-owner", "g"]
    assert data is not None
    assert data["items"][5] == {
        "name": "f",
        "score": 3.0,
        "owner": {"name": "owner-of-f:owner", "score": 1.5},
    }
    assert sorted(m for m, _, _ in errors) == [
        "Cannot return null for non-nullable field Item.name.",
        "Float cannot represent non numeric value: inf",
        "Float cannot represent non numeric value: nan",
    ]
    answered.clear()
    data, _ = _answer(FastExecutor, "{ one { name score } items { s: score } }")
    assert data is not None
    assert data["one"] == {"name": "async", "score": 1.5}
    assert data["items"][5] == {"s": 3.0}  # the int completed by the projector
    assert "f" in answered


def test_a_known_row_is_loaded_without_asking_the_batch() -> None:
    """KnownLoader (the component and team loaders): rows a page's statement read answer later
    loads of the same key without a batch, and `loaded` sees them; other keys are batched."""
    from finops_gql.graphql.context import KnownLoader, loaded

    asked: list[list[int]] = []

    async def batch(keys: list[int]) -> list[str | None]:
        asked.append(keys)
        return [f"loaded-{k}" for k in keys]

    async def run() -> tuple[Any, ...]:
        loader: KnownLoader[int, str | None] = KnownLoader(batch)
        loader.know({1: "known-1", 2: "known-2"})
        before = (loaded(loader, 1), loaded(loader, 3))
        answers = await asyncio.gather(loader.load(1), loader.load(3), loader.load(1))
        loader.know({1: "later"})  # a key already loaded keeps the value it was loaded with
        again = (await loader.load(1), loaded(loader, 1))
        return before, answers, again, loaded(loader, 3)

    before, answers, again, after = asyncio.run(run())
    assert before == ("known-1", None)
    assert answers == ["known-1", "loaded-3", "known-1"]
    assert again == ("known-1", "known-1")
    assert after == "loaded-3"
    assert asked == [[3]]


def test_projectors_are_compiled_once_per_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    """A selection's projector is generated once and shared by later executions (the same
    document, or another with the same selection); the shared set is bounded."""
    from finops_gql.graphql import execution

    compiled: list[tuple[str, ...]] = []
    original = execution.compile_projector

    def counting(steps: Any, is_awaitable: Any) -> Any:
        compiled.append(tuple(step[0] for step in steps))
        return original(steps, is_awaitable)

    monkeypatch.setattr(execution, "compile_projector", counting)
    monkeypatch.setattr(execution, "_COMPILED", {})
    schema = strawberry.Schema(query=Query, execution_context_class=FastExecutor)

    def data(document: str) -> Any:
        return asyncio.run(schema.execute(document)).data

    first = data("{ items { name score owner { name score } } }")
    assert compiled == [("name", "score"), ("name", "score", "owner")]
    again = data("query Again { items { name score owner { name score } } }")
    assert again == first
    assert len(compiled) == 2
    data("{ items { n: name } }")
    assert compiled[2:] == [("n",)]
    monkeypatch.setattr(execution, "_COMPILED_MAX", 3)
    data("{ items { s: score } }")  # the fourth: the set starts again
    assert len(execution._COMPILED) == 1
