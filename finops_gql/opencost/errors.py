class OpenCostUnavailable(Exception):
    """OpenCost could not answer: unreachable, timed out, non-2xx, or a body we cannot read.

    REST maps it to 503, GraphQL to an error with extensions.code = "OPENCOST_UNAVAILABLE".
    `transient` marks failures worth retrying (timeouts, connection errors, 5xx); a 4xx or a body
    we cannot read would fail the same way again.
    """

    def __init__(self, *args: object, transient: bool = False) -> None:
        super().__init__(*args)
        self.transient = transient
