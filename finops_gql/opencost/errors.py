class OpenCostUnavailable(Exception):
    """OpenCost could not answer: unreachable, timed out, non-2xx, or a body we cannot read.

    REST maps it to 503, GraphQL to an error with extensions.code = "OPENCOST_UNAVAILABLE".
    """
