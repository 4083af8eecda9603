"""The `wasi:http` resource dance for one request: build it, hand it to the
outgoing handler, stream the body, wait for and read the response.

Child resources (streams, pollables, header fields) are released explicitly
before their parents: the host traps when a parent goes first, and CPython
frees a frame's locals in declaration order, which is often parent first.
"""

from typing import List, Optional, Sequence, Tuple, Union

from componentize_py_types import Err, Ok
from wit_world.imports import outgoing_handler, streams
from wit_world.imports import wasi_http_types as types

from ._errors import Denied, InvalidUrl, Transport
from ._url import Target

#: Largest slice `blocking-write-and-flush` accepts in one call.
MAX_WRITE_CHUNK = 4096

#: How many bytes to ask for per `blocking-read` of a response body.
READ_CHUNK = 64 * 1024

_METHODS = {
    "GET": types.Method_Get,
    "HEAD": types.Method_Head,
    "POST": types.Method_Post,
    "PUT": types.Method_Put,
    "DELETE": types.Method_Delete,
    "CONNECT": types.Method_Connect,
    "OPTIONS": types.Method_Options,
    "TRACE": types.Method_Trace,
    "PATCH": types.Method_Patch,
}


def method(name: str) -> types.Method:
    """The WIT `method` for `name` (standard names case-insensitively)."""
    known = _METHODS.get(name.upper())
    return known() if known else types.Method_Other(name)


def send(
    method: types.Method,
    target: Target,
    headers: Sequence[Tuple[str, Union[str, bytes]]],
    body: Optional[bytes],
) -> Tuple[int, List[Tuple[str, bytes]], bytes]:
    """Sends one request; returns status, headers (names lower-case) and the whole body."""
    request = _build_request(method, target, headers, body)
    try:
        outgoing_body = request.body()
    except Err:
        request.__exit__(None, None, None)
        raise Transport("request body already taken") from None
    try:
        future = outgoing_handler.handle(request, None)
    except Err as e:
        outgoing_body.__exit__(None, None, None)
        raise _from_code(e.value, target) from None
    with future:
        try:
            _write_body(outgoing_body, body or b"")
        except Transport as write_error:
            # The host may have refused or failed the request meanwhile: then
            # _wait raises its reason, which beats "stream closed".
            _wait(future, target).__exit__(None, None, None)
            raise write_error from None
        response = _wait(future, target)
        return _read_response(response, target)


def _build_request(
    method: types.Method,
    target: Target,
    headers: Sequence[Tuple[str, Union[str, bytes]]],
    body: Optional[bytes],
) -> types.OutgoingRequest:
    fields = types.Fields()
    extra = [("content-length", str(len(body)))] if body is not None else []
    for name, value in [*headers, *extra]:
        try:
            fields.append(name, value if isinstance(value, bytes) else value.encode("utf-8"))
        except Err as e:
            fields.__exit__(None, None, None)
            raise Transport(f"header `{name}` rejected: {_describe(e.value)}") from None
    request = types.OutgoingRequest(fields)
    for part, setter, value in (
        ("method", request.set_method, method),
        ("scheme", request.set_scheme, target.scheme),
        ("authority", request.set_authority, target.authority),
        ("path", request.set_path_with_query, target.path_with_query),
    ):
        try:
            setter(value)
        except Err:
            request.__exit__(None, None, None)
            raise InvalidUrl(f"{target.original}: {part} rejected") from None
    return request


def _write_body(outgoing_body: types.OutgoingBody, data: bytes) -> None:
    try:
        with outgoing_body.write() as stream:
            for start in range(0, len(data), MAX_WRITE_CHUNK):
                stream.blocking_write_and_flush(data[start : start + MAX_WRITE_CHUNK])
    except Err as e:
        outgoing_body.__exit__(None, None, None)
        if e.value is None:
            raise Transport("request body stream already taken") from None
        raise _from_stream(e.value, None) from None
    try:
        types.OutgoingBody.finish(outgoing_body, None)
    except Err as e:
        raise Transport(_describe(e.value)) from None


def _wait(future: types.FutureIncomingResponse, target: Target) -> types.IncomingResponse:
    with future.subscribe() as pollable:
        outcome = future.get()
        while outcome is None:
            pollable.block()
            outcome = future.get()
    if isinstance(outcome, Err):
        raise Transport("response already taken")
    inner = outcome.value
    if isinstance(inner, Ok):
        return inner.value
    raise _from_code(inner.value, target)


def _read_response(
    response: types.IncomingResponse, target: Target
) -> Tuple[int, List[Tuple[str, bytes]], bytes]:
    with response:
        status = response.status()
        with response.headers() as fields:
            headers = [(name.lower(), value) for name, value in fields.entries()]
        try:
            incoming = response.consume()
        except Err:
            raise Transport("response body already taken") from None
        try:
            body = _read_body(incoming, target)
        except BaseException:
            incoming.__exit__(None, None, None)
            raise
        types.IncomingBody.finish(incoming).__exit__(None, None, None)
    return status, headers, body


def _read_body(incoming: types.IncomingBody, target: Target) -> bytes:
    try:
        stream = incoming.stream()
    except Err:
        raise Transport("response body stream already taken") from None
    chunks = []
    with stream:
        while True:
            try:
                chunks.append(stream.blocking_read(READ_CHUNK))
            except Err as e:
                if isinstance(e.value, streams.StreamError_Closed):
                    return b"".join(chunks)
                raise _from_stream(e.value, target) from None


def _from_code(code: types.ErrorCode, target: Optional[Target]) -> Exception:
    # Both are the host's refusal: the URL, or the address it resolves to, is
    # not granted by the manifest.
    if target and isinstance(code, (types.ErrorCode_HttpRequestDenied, types.ErrorCode_DestinationIpProhibited)):
        return Denied(target.original)
    return Transport(_describe(code))


def _from_stream(e: streams.StreamError, target: Optional[Target]) -> Exception:
    if isinstance(e, streams.StreamError_Closed):
        return Transport("stream closed")
    with e.value as io_error:
        code = types.http_error_code(io_error)
        return _from_code(code, target) if code is not None else Transport(io_error.to_debug_string())


def _describe(value: object) -> str:
    """A WIT variant case as `Case` or `Case(payload)`, like Rust's debug text."""
    name = type(value).__name__.split("_", 1)[-1]
    payload = getattr(value, "value", None)
    return f"{name}({payload!r})" if payload is not None else name
