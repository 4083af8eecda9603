"""Outgoing HTTP over `wasi:http/outgoing-handler`, in blocking style.

The host lets a request through only if its URL and method match an entry of
the manifest's `spec.capabilities.http`; otherwise it fails with `Denied`, a
`CapabilityDenied`, so letting it propagate reports a manifest problem, not an
outage. Every other failure is an `Upstream`::

    from agent_host import http

    health = http.get_json("http://127.0.0.1:8080/health")
    created = http.post_json("http://127.0.0.1:8080/api/issues", {"title": "disk"})
    issue_id = created.json()["id"]
"""

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, List, Mapping, Optional, Tuple, Union

from .._json import dumps
from . import _transport, _url
from ._errors import MAX_ERROR_BODY_CHARS, Decode, Denied, HttpError, InvalidUrl, Status, Transport
from ._url import encode_component

__all__ = [
    "MAX_ERROR_BODY_CHARS",
    "Decode",
    "Denied",
    "HttpError",
    "InvalidUrl",
    "Response",
    "Status",
    "Transport",
    "encode_component",
    "get_json",
    "post_json",
    "request",
]


@dataclass
class Response:
    """A complete HTTP response: status, headers and the whole body."""

    status: int
    #: Response headers in the order received (names lower-case).
    headers: List[Tuple[str, bytes]] = field(default_factory=list)
    body: bytes = b""

    def is_success(self) -> bool:
        """Whether the status is 2xx."""
        return 200 <= self.status < 300

    def header(self, name: str) -> Optional[str]:
        """The first value of header `name` (case-insensitive), if present and UTF-8."""
        for key, value in self.headers:
            if key.lower() == name.lower():
                try:
                    return value.decode("utf-8")
                except UnicodeDecodeError:
                    return None
        return None

    def text(self) -> str:
        """The body decoded as UTF-8, invalid bytes replaced."""
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON; raises `Decode` if it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise Decode(f"response is not the expected JSON: {e}") from None

    def error_for_status(self) -> "Response":
        """`self` if the status is 2xx, otherwise raises `Status` with the start of the body."""
        if self.is_success():
            return self
        raise Status(self.status, self.text()[:MAX_ERROR_BODY_CHARS])


Headers = Union[Mapping[str, Union[str, bytes]], Iterable[Tuple[str, Union[str, bytes]]]]


def request(
    method: str, url: str, headers: Headers = (), body: Union[bytes, str, None] = None
) -> Response:
    """Sends one request and waits for the complete response.

    `method` is an HTTP method name ("GET", "POST"...). `headers` (values as
    text or bytes) are sent as given; a `content-length` header is added when `body` is not None (text
    is sent as UTF-8). Every status is returned as a `Response`; only failures
    to get one raise.
    """
    target = _url.parse(url)
    pairs = list(headers.items() if isinstance(headers, Mapping) else headers)
    data = body.encode("utf-8") if isinstance(body, str) else body
    status, received, content = _transport.send(_transport.method(method), target, pairs, data)
    return Response(status, received, content)


def get_json(url: str) -> Any:
    """GETs `url` and returns its 2xx response parsed as JSON; non-2xx statuses raise `Status`."""
    return request("GET", url, [("accept", "application/json")]).error_for_status().json()


def post_json(url: str, body: Any) -> Response:
    """POSTs `body` serialised as JSON to `url` and returns the 2xx response;
    non-2xx statuses raise `Status`."""
    try:
        data = dumps(body)
    except (TypeError, ValueError) as e:
        raise Decode(f"cannot encode request body: {e}") from None
    headers = [("content-type", "application/json"), ("accept", "application/json")]
    return request("POST", url, headers, data).error_for_status()
