class OpenCostUnavailable(Exception):
    """OpenCost could not answer: unreachable, timed out, non-2xx, or a body we cannot read.

    REST maps it to 503, GraphQL to an error with extensions.code = "OPENCOST_UNAVAILABLE".
    `str(exc)` is the public reason, generic by construction ("OpenCost answered HTTP 500"): it
    reaches clients, so it never carries OpenCost's body, its URL or a value it sent. Those go in
    `detail`, which only the logs see (upstream error bodies have been seen to name internal
    Prometheus URLs). `transient` marks failures worth retrying (timeouts, connection errors,
    5xx); a 4xx or a body we cannot read would fail the same way again.
    """

    def __init__(self, reason: str, detail: str | None = None, *, transient: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail
        self.transient = transient
