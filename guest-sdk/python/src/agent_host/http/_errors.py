"""Why an HTTP request failed."""

from ..errors import AgentError, CapabilityDenied, Upstream

#: Longest prefix of a non-2xx response body kept in `Status`, so an error
#: page cannot blow up the agent's error message.
MAX_ERROR_BODY_CHARS = 1024


class HttpError(AgentError):
    """Base of every HTTP failure. `Denied` is a `CapabilityDenied` (fix the
    manifest); every other case is an `Upstream` (retry later)."""


class Denied(HttpError, CapabilityDenied):
    """The host refused the request (`error-code.HTTP-request-denied`): the URL
    or method is not declared in `spec.capabilities.http`."""

    def __init__(self, url: str):
        super().__init__(
            f"HTTP request to {url} denied by the host: declare it in spec.capabilities.http"
        )
        self.url = url


class Status(HttpError, Upstream):
    """The server answered with a non-2xx status (only from `get_json`,
    `post_json` and `Response.error_for_status`; `request` returns every status)."""

    def __init__(self, status: int, body: str):
        super().__init__(f"HTTP status {status}: {body}")
        self.status = status
        #: The start of the response body (at most MAX_ERROR_BODY_CHARS).
        self.body = body


class Transport(HttpError, Upstream):
    """The request failed on the way (connection refused, DNS, timeout, a header
    the host forbids, the per-invocation request budget spent
    (`ConnectionLimitReached`)...): the `wasi:http` error code."""

    def __init__(self, detail: str):
        super().__init__(f"HTTP transport error: {detail}")
        self.detail = detail


class InvalidUrl(HttpError, Upstream):
    """The URL could not be parsed into scheme, authority and path."""

    def __init__(self, detail: str):
        super().__init__(f"invalid URL: {detail}")
        self.detail = detail


class Decode(HttpError, Upstream):
    """A JSON body could not be encoded, or a response body is not the expected JSON."""

    def __init__(self, detail: str):
        super().__init__(f"HTTP body: {detail}")
        self.detail = detail
