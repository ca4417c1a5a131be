"""uvicorn options for `finops-gql serve`, and a header-size bound for its httptools protocol.

uvicorn[standard] serves HTTP/1.1 with httptools (llhttp), which has no limit on the request line
and headers: it buffers whatever arrives until the blank line (a 64 MB header stalled /healthz for
seconds). h11, uvicorn's other implementation, refuses a header section over
`h11_max_incomplete_event_size` with a 400. The protocol below gives httptools the same bound,
read from the same uvicorn option, and answers 431 as RFC 6585 asks.
"""

from __future__ import annotations

import gc
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from finops_gql.config import Settings

REFUSAL = b"request header fields too large"

# The cyclic GC's first generation threshold in a server process (Python's default: 700). A
# GraphQL answer allocates thousands of short-lived objects, so at 700 the collector runs several
# times per answer. Higher thresholds save CPU and cost memory, since garbage in cycles waits
# longer. In process, 32 concurrent team answers (500 components each) peaked at 93 MB with 700,
# 121 MB with 2,000 and 168 MB with 10,000, for about 6% and 16% less CPU per answer; in the
# benchmark (README, Performance) 2,000 against 10,000 gave a server peak of 138 against 148 MB
# and p50s 10% slower (page of 50 2.92 against 2.66 ms, component series 3.96 against 3.47 ms).
GC_FIRST_GENERATION = 10_000


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Server limits; `uvicorn.run(app, **uvicorn_options(settings), host=..., ...)`."""
    options: dict[str, Any] = {
        # h11 enforces this itself; BoundedHttpToolsProtocol reads it too.
        "h11_max_incomplete_event_size": settings.http_max_header_bytes,
        # Past this many open connections and tasks, uvicorn answers 503 at once instead of
        # queueing work the process cannot do in time.
        "limit_concurrency": settings.http_limit_concurrency,
        "timeout_keep_alive": 5,
        "backlog": 2048,
        # What uvicorn[standard]'s "auto" picks, with the bound added.
        "http": BoundedHttpToolsProtocol,
    }
    return options


def settle_heap() -> None:
    """Called once per server process, after the app is built (its schema, models and routes
    live as long as the process): those objects are frozen out of the collector's scans
    (gc.freeze), and the first generation collects every GC_FIRST_GENERATION allocations
    instead of 700 (see there for the memory this costs)."""
    gc.collect()
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(GC_FIRST_GENERATION, second, third)


class HeadTooLarge(Exception):
    """Raised from a parser callback: httptools stops parsing and reports a callback error."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """httptools with a bound on the bytes of one request's line and headers.

    Two counts, because llhttp hands over a header only once its value is complete: the parsed
    request line and headers (exact, for heads that arrive whole), and the bytes read while a
    head is still incomplete (for one that never ends), so at most the bound plus one read
    (256 KiB) is ever buffered, whatever the client sends.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limit = self.config.h11_max_incomplete_event_size
        self.max_head_bytes: int = limit if limit is not None else 65536
        self.in_head = False
        self.head_read = 0
        self.head_parsed = 0
        self.too_large = False

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.in_head = True
        self.head_read = self.head_parsed = 0

    def _count(self, size: int) -> None:
        self.head_parsed += size
        if self.head_parsed > self.max_head_bytes:
            self.too_large = True
            raise HeadTooLarge

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self.in_head = False
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self.in_head or self.transport.is_closing():
            return
        self.head_read += len(data)
        if self.head_read > self.max_head_bytes:
            self.refuse()

    def send_400_response(self, msg: str) -> None:
        # uvicorn's answer to any parser error, ours (HeadTooLarge) included.
        if self.too_large:
            self.refuse()
        else:
            super().send_400_response(msg)

    def refuse(self) -> None:
        self.logger.warning(
            "refused a request whose headers exceed %d bytes (HTTP_MAX_HEADER_BYTES)",
            self.max_head_bytes,
        )
        self.in_head = self.too_large = False
        busy = self.cycle is not None and not self.cycle.response_complete
        if not busy:  # never write into the middle of a pipelined response
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                b"content-type: text/plain; charset=utf-8\r\n"
                b"content-length: " + str(len(REFUSAL)).encode() + b"\r\n"
                b"connection: close\r\n\r\n" + REFUSAL
            )
        self.transport.close()
