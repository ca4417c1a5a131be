"""The only place raw OpenCost JSON is read.

Shapes follow OpenCost's own router (`pkg/costmodel/router.go`) and the captured responses in
tests/fixtures: `{"code": 200, "status": "success", "data": [{key: Allocation}, ...]}` with one map per
step. Any float may be null (NaN/Inf on the server side).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from finops_gql.opencost.errors import OpenCostUnavailable

log = logging.getLogger(__name__)

# Synthetic entries OpenCost adds to every aggregation; never a catalog component.
SYNTHETIC_KEYS = frozenset({"__idle__", "__unallocated__", "__unmounted__"})


@dataclass(frozen=True, slots=True)
class Allocation:
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
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise OpenCostUnavailable(
            f"OpenCost sent an unreadable {what} time", f"{what}={value!r:.200}"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def normalize_key(aggregate: str, key: str) -> str:
    """Map an allocation key to the catalog's selector key.

    With `aggregate=label:app`, OpenCost >= 1.100 answers with the bare label value and older
    releases with `app=<value>`: accept both.
    """
    for part in aggregate.split(","):
        part = part.strip()
        if part.startswith("label:"):
            prefix = part.removeprefix("label:") + "="
            if key.startswith(prefix):
                return key.removeprefix(prefix)
    return key


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


def parse_allocation_response(
    body: Any, aggregate: str, *, synthetic: bool = False
) -> list[dict[str, Allocation]]:
    """One dict per step, keyed by the normalized selector key, synthetic entries dropped
    unless `synthetic` (the sync keeps them for the coverage figures, under their own keys).

    A key may come in both forms in one answer (`checkout` and `app=checkout`, e.g. while
    clusters on both sides of OpenCost 1.100 report together). They describe the same workload,
    so their costs are never summed: the bare form (OpenCost >= 1.100) wins, the legacy `app=`
    form counts only when the bare one is absent, and the answer logs one warning.
    """
    if not isinstance(body, Mapping):
        raise OpenCostUnavailable("OpenCost answered with something other than a JSON object")
    code = body.get("code")
    if code is not None and code != 200:
        message = body.get("message") or body.get("status") or "unknown error"
        # The message is OpenCost's own text (it has named internal URLs): logs only.
        shown = code if isinstance(code, int) and not isinstance(code, bool) else "other than 200"
        raise OpenCostUnavailable(
            f"OpenCost answered code {shown}", f"{code!r:.50}: {message!s:.500}"
        )
    data = body.get("data")
    if data is None:
        return []
    if not isinstance(data, list):
        raise OpenCostUnavailable("OpenCost's allocation data is not a list of steps")
    steps: list[dict[str, Allocation]] = []
    ignored: set[str] = set()
    for step in data:
        if step is None:
            steps.append({})
            continue
        if not isinstance(step, Mapping):
            raise OpenCostUnavailable("an OpenCost allocation step is not an object")
        parsed: dict[str, Allocation] = {}
        raw_keys: dict[str, str] = {}  # normalized key -> the raw key its allocation came from
        for key, raw in step.items():
            if key in SYNTHETIC_KEYS and not synthetic:
                continue
            if not isinstance(raw, Mapping):
                raise OpenCostUnavailable(
                    "an OpenCost allocation is not an object", f"key {key!r:.200}"
                )
            key = str(key)
            allocation = parse_allocation(raw, key, aggregate)
            kept = raw_keys.get(allocation.key)
            if kept is not None:
                if kept == allocation.key or key != allocation.key:
                    ignored.add(key)  # the bare form is kept (or the first of two legacy ones)
                    continue
                ignored.add(kept)  # this is the bare form: it replaces the legacy one
            parsed[allocation.key] = allocation
            raw_keys[allocation.key] = key
        steps.append(parsed)
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
    return steps
