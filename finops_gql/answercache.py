"""The answer cache: whole GraphQL answers kept in-process and served again while nothing changed.

Dashboards ask the same few queries over and over; between two syncs the answers do not move. An
entry is found by

- the data version (db/dataversion.py): one number every write bumps in its own transaction,
  read once per request, so any write makes every older entry unreachable, in every replica;
- the UTC day: relative ranges (LAST_30_DAYS, forecasts, budget periods) move with it;
- what the principal may see (access.scope_key): every principal of AUTHZ_MODE=open, viewers and
  admins share one scope; a team member's is its claimed teams;
- the document, normalized (the printed AST's SHA-256: spacing, comments and commas do not
  matter), the operation name and the variables (keys sorted).

Kept out of it:
- mutations and subscriptions (only query operations are looked up or stored);
- answers with errors, and answers stopped by the deadline or the rate limit;
- answers that read OpenCost live (`actual`, the live 7- and 30-day figures, availability): the
  OpenCost client marks the request (opencost.client.LIVE_READS) and such answers are never
  stored, so they stay as fresh as OPENCOST_CACHE_SECONDS makes them;
- requests whose data version cannot be read: answered by executing, never from the cache.

A hit is still charged its cost to the principal's rate budget, like the operation it stands
for, and its `extensions.cost` is the one the operation would report now (remaining budget
included). Entries are bounded by the bytes of their JSON (GRAPHQL_ANSWER_CACHE_MB, 0 disables
the cache), least recently used out first; a version change drops every entry at once.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

from graphql import GraphQLError, OperationType, get_operation_ast, print_ast

from finops_gql.graphql.documents import DocumentGuard
from finops_gql.metrics import ANSWER_CACHE, ANSWER_CACHE_BYTES

# Per entry beyond its JSON: the key's strings, the tuple, the dict slot (measured roughly).
ENTRY_OVERHEAD = 512
# Distinct (document, operation name) pairs whose plan is remembered.
PLANS_MAX = 1024

# (data version, UTC day, scope key, document hash, operation name, variables JSON)
Key = tuple[int, str, str, str, str | None, bytes]


@dataclass(frozen=True, slots=True)
class Answer:
    data: bytes  # the answer's `data`, serialized as the view serializes it
    cost: int  # the operation's computed cost, charged again on every hit


class AnswerCache:
    def __init__(self, max_mb: int, documents: DocumentGuard) -> None:
        self.max_bytes = max_mb * 1024 * 1024
        self.documents = documents
        self._entries: OrderedDict[Key, Answer] = OrderedDict()
        self._bytes = 0
        self._version: int | None = None
        self._plans: OrderedDict[tuple[str, str | None], str | None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes

    def plan(self, query: str, operation_name: str | None) -> str | None:
        """The normalized document's hash when its operation is a query, else None (a mutation, a
        subscription, or a document the normal path will refuse)."""
        pair = (query, operation_name)
        try:
            found = self._plans[pair]
        except KeyError:
            pass
        else:
            self._plans.move_to_end(pair)
            return found
        try:
            document = self.documents.parse(query)  # the app's limits and parse cache
        except GraphQLError:
            return None  # not remembered: the normal path answers the error every time
        operation = get_operation_ast(document, operation_name)
        digest = None
        if operation is not None and operation.operation is OperationType.QUERY:
            digest = hashlib.sha256(print_ast(document).encode()).hexdigest()
        self._plans[pair] = digest
        while len(self._plans) > PLANS_MAX:
            self._plans.popitem(last=False)
        return digest

    def _observe(self, version: int) -> None:
        """A new data version makes every entry unreachable: drop them all now."""
        if version != self._version:
            self._version = version
            self._entries.clear()
            self._bytes = 0
            ANSWER_CACHE_BYTES.set(0)

    def get(self, key: Key) -> Answer | None:
        self._observe(key[0])
        answer = self._entries.get(key)
        if answer is None:
            ANSWER_CACHE.labels("miss").inc()
            return None
        self._entries.move_to_end(key)
        ANSWER_CACHE.labels("hit").inc()
        return answer

    def put(self, key: Key, answer: Answer) -> bool:
        """Keep `answer`; False when it was not kept (an older version, or too large)."""
        if key[0] != self._version:
            return False  # a write committed while it ran: its version is gone already
        size = len(answer.data) + ENTRY_OVERHEAD
        if size > self.max_bytes // 4:  # one answer never takes most of the cache
            return False
        previous = self._entries.pop(key, None)
        if previous is not None:
            self._bytes -= len(previous.data) + ENTRY_OVERHEAD
        self._entries[key] = answer
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= len(evicted.data) + ENTRY_OVERHEAD
        ANSWER_CACHE_BYTES.set(self._bytes)
        return True


def bypassed() -> None:
    """A request the cache could not answer nor keep (see the module's doc)."""
    ANSWER_CACHE.labels("bypass").inc()
