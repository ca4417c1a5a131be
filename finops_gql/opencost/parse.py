"""The only place raw OpenCost JSON is read.

Shapes follow OpenCost's own router (`pkg/costmodel/router.go`) and the captured responses in
tests/fixtures: `{"code": 200, "status": "success", "data": [{key: Allocation}, ...]}` with one map per
step. Any float may be null (NaN/Inf on the server side).
"""

from __future__ import annotations

import codecs
import functools
import json
import json.scanner
import logging
import re
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple, cast

import orjson

from finops_gql.opencost.errors import OpenCostUnavailable

log = logging.getLogger(__name__)

# Synthetic entries OpenCost adds to every aggregation; never a catalog component.
SYNTHETIC_KEYS = frozenset({"__idle__", "__unallocated__", "__unmounted__"})
# The public reasons of a malformed answer (str(OpenCostUnavailable) reaches clients).
NOT_JSON = "OpenCost answered with a body that is not JSON"
NOT_AN_OBJECT = "OpenCost answered with something other than a JSON object"
NOT_A_LIST = "OpenCost's allocation data is not a list of steps"
STEP_NOT_AN_OBJECT = "an OpenCost allocation step is not an object"


class Allocation(NamedTuple):
    """One allocation's figures. A named tuple, immutable like the frozen dataclass it was and
    built about six times faster (a sync builds 300,000)."""

    key: str
    start: datetime
    end: datetime
    cpu_cost: float
    ram_cost: float
    pv_cost: float
    network_cost: float
    gpu_cost: float
    load_balancer_cost: float
    shared_cost: float
    external_cost: float
    total_cost: float


def _num(raw: Mapping[str, Any], name: str) -> float:
    value = raw.get(name)
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise OpenCostUnavailable(f"OpenCost sent a non-numeric {name}", f"{name}={value!r:.200}")
    return float(value)


def _with_adjustment(raw: Mapping[str, Any], name: str) -> float:
    # OpenCost's own totals count the adjustment (e.g. CPUTotalCost = cpuCost + cpuCostAdjustment).
    return _num(raw, name) + _num(raw, name + "Adjustment")


def _time(value: Any, what: str) -> datetime:
    if not isinstance(value, str):
        raise OpenCostUnavailable(f"OpenCost sent no {what} time")
    try:
        return _iso_time(value)
    except ValueError:
        raise OpenCostUnavailable(
            f"OpenCost sent an unreadable {what} time", f"{what}={value!r:.200}"
        ) from None


@functools.lru_cache(maxsize=4096)
def _iso_time(value: str) -> datetime:
    """Cached: every allocation of a step has the same window, and a sync reads 300,000."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def normalize_key(aggregate: str, key: str) -> str:
    """Map an allocation key to the catalog's selector key.

    With `aggregate=label:app`, OpenCost >= 1.100 answers with the bare label value and older
    releases with `app=<value>`: accept both.
    """
    for prefix in _label_prefixes(aggregate):
        if key.startswith(prefix):
            return key.removeprefix(prefix)
    return key


@functools.lru_cache(maxsize=256)
def _label_prefixes(aggregate: str) -> tuple[str, ...]:
    """The legacy key prefixes (`app=`) of an aggregate's labels, computed once per aggregate."""
    parts = (part.strip() for part in aggregate.split(","))
    return tuple(p.removeprefix("label:") + "=" for p in parts if p.startswith("label:"))


def parse_allocation(raw: Mapping[str, Any], key: str, aggregate: str) -> Allocation:
    """One allocation. A sync reads hundreds of thousands of these: plain arithmetic first, and
    the checked path (nulls, missing fields, non-numbers) only when that fails."""
    try:
        get = raw.get
        window = raw["window"]
        return Allocation(
            key=normalize_key(aggregate, key),
            start=_time(window["start"], "start"),
            end=_time(window["end"], "end"),
            cpu_cost=float(raw["cpuCost"] + get("cpuCostAdjustment", 0)),
            ram_cost=float(raw["ramCost"] + get("ramCostAdjustment", 0)),
            pv_cost=float(raw["pvCost"] + get("pvCostAdjustment", 0)),
            network_cost=float(raw["networkCost"] + get("networkCostAdjustment", 0)),
            gpu_cost=float(raw["gpuCost"] + get("gpuCostAdjustment", 0)),
            load_balancer_cost=float(
                raw["loadBalancerCost"] + get("loadBalancerCostAdjustment", 0)
            ),
            shared_cost=float(raw["sharedCost"] + 0),
            external_cost=float(raw["externalCost"] + 0),
            total_cost=float(raw["totalCost"] + 0),
        )
    except (KeyError, TypeError):
        return _parse_allocation_checked(raw, key, aggregate)


def _parse_allocation_checked(raw: Mapping[str, Any], key: str, aggregate: str) -> Allocation:
    parts = {
        "cpu_cost": _with_adjustment(raw, "cpuCost"),
        "ram_cost": _with_adjustment(raw, "ramCost"),
        "pv_cost": _with_adjustment(raw, "pvCost"),
        "network_cost": _with_adjustment(raw, "networkCost"),
        "gpu_cost": _with_adjustment(raw, "gpuCost"),
        "load_balancer_cost": _with_adjustment(raw, "loadBalancerCost"),
        "shared_cost": _num(raw, "sharedCost"),
        "external_cost": _num(raw, "externalCost"),
    }
    total = raw.get("totalCost")
    window = raw.get("window")
    window = window if isinstance(window, Mapping) else {}
    return Allocation(
        key=normalize_key(aggregate, key),
        start=_time(window.get("start", raw.get("start")), "start"),
        end=_time(window.get("end", raw.get("end")), "end"),
        # A null total is NaN upstream; the sum of the parts is the best honest figure.
        total_cost=_num(raw, "totalCost") if total is not None else sum(parts.values()),
        **parts,
    )


class StepBuilder:
    """One step's allocations, keyed by the normalized selector key, built one entry at a time
    (the whole-answer parser and the streaming one share it, so they agree by construction).

    A key may come in both forms in one step (`checkout` and `app=checkout`, e.g. while
    clusters on both sides of OpenCost 1.100 report together). They describe the same workload,
    so their costs are never summed: the bare form (OpenCost >= 1.100) wins, the legacy `app=`
    form counts only when the bare one is absent; the keys ignored go to `ignored`."""

    __slots__ = ("aggregate", "ignored", "parsed", "raw_keys", "synthetic")

    def __init__(self, aggregate: str, synthetic: bool, ignored: set[str]) -> None:
        self.aggregate = aggregate
        self.synthetic = synthetic
        self.ignored = ignored
        self.parsed: dict[str, Allocation] = {}
        self.raw_keys: dict[str, str] = {}  # normalized key -> the raw key its allocation came from

    def add(self, key: str, raw: Any) -> None:
        if key in SYNTHETIC_KEYS and not self.synthetic:
            return
        if not isinstance(raw, Mapping):
            raise OpenCostUnavailable(
                "an OpenCost allocation is not an object", f"key {key!r:.200}"
            )
        key = str(key)
        allocation = parse_allocation(raw, key, self.aggregate)
        kept = self.raw_keys.get(allocation.key)
        if kept is not None and kept != key:  # the same key again: the last wins, as in JSON
            if kept == allocation.key or key != allocation.key:
                self.ignored.add(key)  # the bare form is kept (or the first of two legacy ones)
                return
            self.ignored.add(kept)  # this is the bare form: it replaces the legacy one
        self.parsed[allocation.key] = allocation
        self.raw_keys[allocation.key] = key


def check_envelope(body: Mapping[str, Any]) -> None:
    """OpenCost's `code` other than 200 is an error whatever the HTTP status said."""
    code = body.get("code")
    if code is not None and code != 200:
        message = body.get("message") or body.get("status") or "unknown error"
        # The message is OpenCost's own text (it has named internal URLs): logs only.
        shown = code if isinstance(code, int) and not isinstance(code, bool) else "other than 200"
        raise OpenCostUnavailable(
            f"OpenCost answered code {shown}", f"{code!r:.50}: {message!s:.500}"
        )


def warn_ignored(ignored: set[str], aggregate: str) -> None:
    if ignored:
        ignored_keys = sorted(ignored)
        log.warning(
            "OpenCost answered %d key(s) for aggregate %s in both the bare and the legacy label "
            "form; kept the bare form and ignored %s%s, never summed both",
            len(ignored_keys),
            aggregate,
            ", ".join(ignored_keys[:10]),
            " ..." if len(ignored_keys) > 10 else "",
        )


def parse_allocation_response(
    body: Any, aggregate: str, *, synthetic: bool = False
) -> list[dict[str, Allocation]]:
    """One dict per step, keyed by the normalized selector key, synthetic entries dropped
    unless `synthetic` (the sync keeps them for the coverage figures, under their own keys).
    The answer is decoded whole: the live reads' answers are small (the sync streams its own,
    see `stream_allocation_steps`). Keys in both label forms: see StepBuilder."""
    if not isinstance(body, Mapping):
        raise OpenCostUnavailable("OpenCost answered with something other than a JSON object")
    check_envelope(body)
    data = body.get("data")
    if data is None:
        return []
    if not isinstance(data, list):
        raise OpenCostUnavailable(NOT_A_LIST)
    steps: list[dict[str, Allocation]] = []
    ignored: set[str] = set()
    for step in data:
        if step is None:
            steps.append({})
            continue
        if not isinstance(step, Mapping):
            raise OpenCostUnavailable(STEP_NOT_AN_OBJECT)
        builder = StepBuilder(aggregate, synthetic, ignored)
        for key, raw in step.items():
            builder.add(key, raw)
        steps.append(builder.parsed)
    warn_ignored(ignored, aggregate)
    return steps


# -- the streaming parser (the sync's answers: hundreds of MB) -------------------------------------

_WHITESPACE = re.compile(r"[ \t\n\r]*")
# A value still incomplete when this much text waits is malformed, not cut by a chunk boundary
# (an allocation is about 1 KB): the parser's memory stays bounded whatever the answer.
MAX_PENDING_CHARS = 8 * 1024 * 1024
# Parsed text kept before a careful scan (see _Text.drop_parsed).
DROP_AFTER_CHARS = 4096


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN/Infinity: orjson refuses them too


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)
# The standard library's C scanner (json.scanner.c_make_scanner, json.decoder.c_scanstring):
# one value or string at an index, returning where it ended. Not in typeshed, hence the casts.
_scan_value = cast(Callable[[str, int], tuple[Any, int]], json.scanner.make_scanner(_DECODER))  # type: ignore[arg-type]
_scan_string = cast(Callable[[str, int], tuple[str, int]], getattr(json.decoder, "scanstring"))  # noqa: B009


class NotJSON(OpenCostUnavailable):
    """The body is not (complete) JSON: malformed or truncated."""

    def __init__(self, detail: str) -> None:
        super().__init__(NOT_JSON, detail)


class _Text:
    """The answer's text, decoded chunk by chunk; `s[i:]` is what is not parsed yet. Only the
    unparsed tail and one chunk are ever held."""

    def __init__(self, chunks: AsyncIterable[bytes]) -> None:
        self._chunks = chunks.__aiter__()
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self.s = ""
        self.i = 0
        self.eof = False
        self.base = 0  # where s begins in the answer's text
        # How an allocation's text begins, from the first one read (see _value_prefix).
        self.prefix: str | None = None
        self.careful_until = 0  # members before this offset are read one by one

    async def more(self) -> bool:
        """Read one more chunk; False at the end of the answer."""
        while not self.eof:
            try:
                chunk = await anext(self._chunks)
            except StopAsyncIteration:
                self.eof = True
                text = self._utf8.decode(b"", final=True)
            else:
                text = self._utf8.decode(chunk)
            if text:
                self.base += self.i
                self.s = self.s[self.i :] + text
                self.i = 0
                return True
        return False

    def drop_parsed(self) -> None:
        """Forget the parsed text before a value is scanned the careful way: the standard
        library's error at a chunk's edge counts the lines of everything before it."""
        if self.i > DROP_AFTER_CHARS:
            self.base += self.i
            self.s = self.s[self.i :]
            self.i = 0

    async def peek(self) -> str:
        """The next character after whitespace ("" at the end of the answer)."""
        while True:
            self.i = _WHITESPACE.match(self.s, self.i).end()  # type: ignore[union-attr]
            if self.i < len(self.s):
                return self.s[self.i]
            if not await self.more():
                return ""

    async def expect(self, char: str) -> None:
        found = await self.peek()
        if found != char:
            raise NotJSON(f"expected {char!r} at {found!r:.20}")
        self.i += 1

    async def value(self) -> Any:
        """One JSON value, decoded by the standard library's C scanner."""
        await self.peek()
        self.drop_parsed()
        while True:
            try:
                value, end = _scan_value(self.s, self.i)
            except (StopIteration, ValueError) as exc:  # JSONDecodeError is a ValueError
                if len(self.s) - self.i < MAX_PENDING_CHARS and await self.more():
                    continue  # cut by the chunk's end: read on
                raise NotJSON(f"{type(exc).__name__}: {exc}"[:200]) from None
            # A number at the very end may go on in the next chunk.
            if end == len(self.s) and not self.eof and await self.more():
                continue
            self.i = end
            return value

    async def key(self) -> str:
        await self.expect('"')
        self.drop_parsed()
        while True:
            try:
                key, end = _scan_string(self.s, self.i)
            except ValueError as exc:
                if len(self.s) - self.i < MAX_PENDING_CHARS and await self.more():
                    continue
                raise NotJSON(f"{exc}"[:200]) from None
            self.i = end
            await self.expect(":")
            return str(key)

    async def next_member(self, close: str) -> bool:
        """After a member: True if another follows (","), False at `close`."""
        found = await self.peek()
        self.i += 1
        if found == ",":
            return True
        if found == close:
            return False
        raise NotJSON(f"expected ',' or {close!r} at {found!r:.20}")


async def stream_allocation_steps(
    chunks: AsyncIterable[bytes], aggregate: str, *, synthetic: bool = False
) -> AsyncIterator[dict[str, Allocation]]:
    """`parse_allocation_response` over an answer read chunk by chunk: the same steps, the
    same errors, while only one step's parsed allocations and one chunk are held. An error
    may come after steps were yielded (a truncated or malformed answer, a `code` after `data`):
    consumers keep what they got aside until the iteration ends.

    The outer structure (the envelope, `data`, each step's keys) is walked here; each
    allocation is decoded by the standard library's C scanner, then parsed like any other."""
    text = _Text(chunks)
    first = await text.peek()
    if first != "{":
        await text.value()  # valid JSON of another type, or NotJSON
        if await text.peek():
            raise NotJSON("text after the JSON value")
        raise OpenCostUnavailable(NOT_AN_OBJECT)
    text.i += 1
    envelope: dict[str, Any] = {}
    ignored: set[str] = set()
    if await text.peek() == "}":
        text.i += 1
    else:
        more = True
        while more:
            name = await text.key()
            if name != "data":
                envelope[name] = await text.value()
            else:
                check_envelope(envelope)  # a code before the data fails before it is read
                if await text.peek() != "[":
                    data = await text.value()
                    if data is not None:
                        raise OpenCostUnavailable(NOT_A_LIST)
                else:
                    text.i += 1
                    async for step in _steps(text, aggregate, synthetic, ignored):
                        yield step
            more = await text.next_member("}")
    if await text.peek():
        raise NotJSON("text after the JSON value")
    check_envelope(envelope)
    warn_ignored(ignored, aggregate)


async def _steps(
    text: _Text, aggregate: str, synthetic: bool, ignored: set[str]
) -> AsyncIterator[dict[str, Allocation]]:
    """The steps of `data`, its `[` read."""
    if await text.peek() == "]":
        text.i += 1
        return
    more = True
    while more:
        start = await text.peek()
        if start == "{":
            text.i += 1
            builder = StepBuilder(aggregate, synthetic, ignored)
            if await text.peek() == "}":
                text.i += 1
            else:
                # The members in the text at hand, without a coroutine each; one at the
                # chunk's edge (or a malformed one, to be named) the careful way.
                while not _members_at_hand(text, builder):
                    key = await text.key()
                    builder.add(key, await text.value())
                    if not await text.next_member("}"):
                        break
            yield builder.parsed
        elif await text.value() is None:
            yield {}
        else:
            raise OpenCostUnavailable(STEP_NOT_AN_OBJECT)
        more = await text.next_member("]")


def _members_at_hand(text: _Text, builder: StepBuilder) -> bool:
    """Add the step's members whose key, value and following `,` or `}` are all in the text
    read so far; True when the step's `}` was reached. Stops at the first member that is
    incomplete or malformed, left to the careful path (which reads on or names the error).

    Runs of whole members are decoded by orjson, one call per batch (_batch_end finds where
    one ends); the member at the text's edge, and every member of a batch orjson refused (a
    batch crossing a step's end, or a value orjson reads otherwise than the standard
    library: those are then read one by one, and the standard library names any error), are
    decoded one at a time by the standard library's C scanner."""
    s, i = text.s, text.i
    n = len(s)
    skip = _WHITESPACE.match
    while True:
        i = skip(s, i).end()  # type: ignore[union-attr]
        if i >= n or s[i] != '"':
            return False
        if text.base + i >= text.careful_until and text.prefix is not None:
            end = _batch_end(s, i, n, text.prefix)
            if end > i:
                try:
                    members = orjson.loads("{" + s[i:end] + "}")
                except orjson.JSONDecodeError:
                    text.careful_until = text.base + end  # one by one up to there
                else:
                    for key, value in members.items():
                        builder.add(key, value)
                    text.i = i = end + 1  # past the `,` after the batch's last member
                    continue
        if i > DROP_AFTER_CHARS:
            text.i = i
            text.drop_parsed()
            s, i, n = text.s, text.i, len(text.s)
        try:
            key, j = _scan_string(s, i + 1)
            j = skip(s, j).end()  # type: ignore[union-attr]
            if j >= n or s[j] != ":":
                return False
            start = skip(s, j + 1).end()  # type: ignore[union-attr]
            value, j = _scan_value(s, start)
        except (StopIteration, ValueError):
            return False
        j = skip(s, j).end()  # type: ignore[union-attr]
        if j >= n or s[j] not in ",}":
            return False
        if text.prefix is None:
            text.prefix = _value_prefix(s, start, j)
        builder.add(key, value)
        text.i = i = j + 1
        if s[j] == "}":
            return True


# Text ahead of a batch's end: a batch is at least this long when the text at hand allows.
BATCH_CHARS = 64 * 1024
_PREFIX_MAX = 40


def _value_prefix(s: str, start: int, end: int) -> str:
    """How an allocation's text begins, up to its first key's `:` (`{"name":` in OpenCost's
    answers: Go writes an Allocation's fields in one order): what _batch_end looks for after
    a key to tell a step's member from an object nested in an allocation. "" (no batches)
    when the value is not an object with a plain first key."""
    if s.startswith('{"', start):
        colon = s.find('":', start + 2, min(end, start + _PREFIX_MAX))
        if colon > 0 and "\\" not in s[start:colon]:
            return s[start : colon + 2]
    return ""


def _batch_end(s: str, i: int, n: int, prefix: str) -> int:
    """Where a batch of whole members starting at `i` (a key's `"`) ends: the index of the `,`
    after a member's closing `}`, chosen as the first member boundary BATCH_CHARS or more
    ahead, else the last one in the text at hand; -1 when none is found. A boundary is
    `},"KEY":` followed by `prefix`; one inside an allocation that looks alike only makes
    orjson refuse the batch (it is then read member by member), never a wrong parse: a slice
    that is not a whole run of members is not a valid JSON object's inside."""
    if not prefix:
        return -1
    marker = '":' + prefix
    found = s.find(marker, i + BATCH_CHARS) if i + BATCH_CHARS < n else -1
    if found < 0:
        found = s.rfind(marker, i, n)
    while found > i:
        quote = s.rfind('"', i, found)  # the key's opening quote (a plain key)
        if quote > i + 1 and s[quote - 2 : quote] == "},":
            return quote - 1
        found = s.rfind(marker, i, found)
    return -1
