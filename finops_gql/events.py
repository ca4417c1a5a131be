"""Redis pub/sub channels: what the worker (and API replicas) announce, and what GraphQL
subscriptions and other consumers listen to. Every message is one JSON object.

- BUDGET_CHANNEL (kept for current consumers): {"componentId", "name", "team", "budgetUsd",
  "cost30d", ...} per component over its budget after a sync.
- ALERTS_CHANNEL: {"event": "raised" | "changed", "alert": {"id", "kind", "status", "teamId",
  "componentId", ...}} when an alert is created or changes status.
- SYNC_FINISHED_CHANNEL: {"syncRunId", "status", "finishedAt", ...} when a sync run ends.
"""

from __future__ import annotations

BUDGET_CHANNEL = "finops_gql:budget_exceeded"
ALERTS_CHANNEL = "finops_gql:alerts"
SYNC_FINISHED_CHANNEL = "finops_gql:sync_finished"
