"""A bound on the size of a request's head (request line and headers) for the uvicorn server:
a head over serving.max_header_bytes is refused with 431 and its connection closed.

uvicorn bounds a head only with its h11 parser (`h11_max_incomplete_event_size`, and only for a
head that arrives in more than one read); its faster httptools parser, which it prefers when
installed, buffers a head of any size. Here the httptools protocol counts the bytes of each head
as they arrive and refuses it once it passes the bound. Without httptools, h11's weaker bound is
what there is.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

REFUSAL = b"request header fields too large"

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # no httptools: uvicorn parses with h11 and its own, partial, bound
    HttpToolsProtocol = None


def uvicorn_settings(max_header_bytes: int) -> dict[str, Any]:
    """uvicorn.Config arguments that refuse a request whose head passes max_header_bytes."""
    if max_header_bytes < 1:
        raise ValueError(f"max_header_bytes {max_header_bytes}: must be at least 1")
    protocol = BoundedHttpToolsProtocol if HttpToolsProtocol is not None else "h11"
    return {"http": protocol, "h11_max_incomplete_event_size": max_header_bytes}


if HttpToolsProtocol is not None:

    class BoundedHttpToolsProtocol(HttpToolsProtocol):
        """uvicorn's httptools protocol; the bound is the config's h11_max_incomplete_event_size
        (uvicorn hands every protocol its Config, and that is its one setting of the kind)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.max_head_bytes = self.config.h11_max_incomplete_event_size or 65536
            self.head_bytes = 0
            self.in_head = True  # between requests, what arrives next is a head
            self.refused = False

        def data_received(self, data: bytes) -> None:
            if self.refused:
                return
            if self.in_head:
                # The whole chunk counts: a GET has no body to arrive with its head.
                self.head_bytes += len(data)
                if self.head_bytes > self.max_head_bytes:
                    self.refuse_head()
                    return
            super().data_received(data)

        def on_headers_complete(self) -> None:
            self.in_head, self.head_bytes = False, 0
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self.in_head = True

        def refuse_head(self) -> None:
            self.refused = True
            log.warning(
                "a request's head passed %d bytes (serving.max_header_bytes): refused with 431",
                self.max_head_bytes,
            )
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                b"content-type: text/plain; charset=utf-8\r\n"
                b"content-length: " + str(len(REFUSAL)).encode() + b"\r\n"
                b"connection: close\r\n\r\n" + REFUSAL
            )
            self.transport.close()
