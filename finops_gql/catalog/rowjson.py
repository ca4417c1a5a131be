"""Component rows written as JSON by the database itself.

A page of components shown with a fixed set of columns (a dashboard's table: name, budget,
30-day cost, team) needs no Python object per row: the statement can write each row's JSON text,
and the caller splices the texts into its answer. The text is byte for byte what the answer's
writer (`jsonjs.dumps`) makes of the same values through the models: strings escaped as orjson
escapes them, numbers as JavaScript writes them, costs rounded by `money` (db/jsonsql.py shows
why each expression is exact). A value no expression can write exactly (a float outside the
ranges jsonsql handles) makes its row's text NULL; the caller then reads the page the ordinary
way.

A `Shape` says which keys a row's object has, in order, and what each holds: a component
column, a constant string, or the component's team as a nested object of team columns. Keys are
checked to be plain names (GraphQL's), so they are written into the statement's text as they
are; values come only from the columns below, never from the caller.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from finops_gql.db import jsonsql

# A key written into the statement's text: GraphQL's Name (the parser admits nothing else).
_KEY_RE = re.compile(r"[_A-Za-z][_0-9A-Za-z]*")


def _component_columns(dialect: str) -> dict[str, str]:
    """Each component column a row may show, as the JSON text the models' path writes."""
    over_budget = "c.budget_usd IS NOT NULL AND c.cost_30d > c.budget_usd"
    if dialect == "postgres":  # NaN is greater than every float there; Python's > says False
        over_budget += " AND c.cost_30d <> 'NaN'::float8 AND c.budget_usd <> 'NaN'::float8"
    return {
        "id": jsonsql.text_json("CAST(c.id AS TEXT)", dialect),
        "name": jsonsql.text_json("c.name", dialect),
        "budget_usd": jsonsql.float_json("c.budget_usd", dialect),
        "cost_30d": jsonsql.money_json("c.cost_30d", dialect),
        "opencost_aggregate": jsonsql.text_json("c.opencost_aggregate", dialect),
        # Component.selector_key: the key, or the name when the key is empty.
        "opencost_key": jsonsql.text_json("COALESCE(NULLIF(c.opencost_key, ''), c.name)", dialect),
        "over_budget": f"CASE WHEN {over_budget} THEN 'true' ELSE 'false' END",
    }


def _team_columns(dialect: str) -> dict[str, str]:
    return {
        "id": jsonsql.text_json("CAST(t.id AS TEXT)", dialect),
        "name": jsonsql.text_json("t.name", dialect),
        "slug": jsonsql.text_json("t.slug", dialect),
        "cost_30d": jsonsql.money_json("t.cost_30d", dialect),
    }


@dataclass(frozen=True)
class Constant:
    """A fixed string value (GraphQL's __typename)."""

    text: str


@dataclass(frozen=True)
class Team:
    """The component's team, as an object of team columns."""

    shape: Shape


# A key's value: a column name (of the component, or of the team inside Team), a Constant, or
# the Team object (components only).
Value = str | Constant | Team
Shape = tuple[tuple[str, Value], ...]


class ShapeError(ValueError):
    """A shape naming a column, key or value this module does not write (a caller's bug)."""


def _literal(text: str) -> str:
    """A JSON fragment as an SQL string literal; `text` holds checked names only."""
    if "'" in text or "\\" in text:
        raise ShapeError(f"unexpected character in {text!r}")
    return f"'{text}'"


def _object(shape: Shape, columns: dict[str, str], team: dict[str, str] | None) -> str:
    if not shape:
        raise ShapeError("an empty shape")
    parts: list[str] = []
    for index, (key, value) in enumerate(shape):
        if not _KEY_RE.fullmatch(key):
            raise ShapeError(f"key {key!r} is not a plain name")
        opening = ("{" if index == 0 else ",") + f'"{key}":'
        parts.append(_literal(opening))
        if isinstance(value, Constant):
            if not _KEY_RE.fullmatch(value.text):
                raise ShapeError(f"constant {value.text!r} is not a plain name")
            parts.append(_literal(f'"{value.text}"'))
        elif isinstance(value, Team):
            if team is None:
                raise ShapeError("a team inside a team")
            parts.append(_object(value.shape, team, None))
        elif value in columns:
            parts.append(columns[value])
        else:
            raise ShapeError(f"no column {value!r}")
    parts.append("'}'")
    return "(" + " || ".join(parts) + ")"


@lru_cache(maxsize=256)
def needs_team(shape: Shape) -> bool:
    return any(isinstance(value, Team) for _, value in shape)


@lru_cache(maxsize=256)  # a shape is one per selection: the same few, request after request
def row_json(shape: Shape, dialect: str) -> str:
    """The SQL expression writing one component row (`c`, its team joined as `t`) as `shape`:
    text, or NULL when a value cannot be written exactly."""
    return _object(shape, _component_columns(dialect), _team_columns(dialect))


def json_array(texts: Sequence[str]) -> str:
    """The rows' texts as one JSON array."""
    return "[" + ",".join(texts) + "]"
