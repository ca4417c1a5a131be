"""Domain errors raised by the service layer; each adapter maps them to its own wire format."""


class ServiceError(Exception):
    """Base of errors a client caused or may retry; never a bug."""


class NotFound(ServiceError):
    def __init__(self, kind: str, ident: object) -> None:
        super().__init__(f"{kind} {ident} not found")
        self.kind = kind
        self.ident = ident


class InvalidInput(ServiceError):
    """Bad arguments: REST 400, GraphQL BAD_USER_INPUT."""


class Conflict(ServiceError):
    """The change would break a uniqueness or ownership rule: REST 409, GraphQL CONFLICT."""


class Forbidden(ServiceError):
    """The principal may not do this (GraphQL FORBIDDEN, REST 403)."""


class QueueUnavailable(ServiceError):
    """Redis (the job queue) cannot be reached: REST 503, GraphQL QUEUE_UNAVAILABLE."""


class MigrationRefused(Exception):
    """A migration cannot apply to the data as it is; the message says what to fix first."""
