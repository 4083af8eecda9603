//! The `wasi:http` resource dance for one request: build it, hand it to the
//! outgoing handler, stream the body, wait for and read the response.
//!
//! Child resources (streams, pollables, header fields) are always dropped
//! before their parents; the host traps otherwise.

use super::url::Target;
use super::{HttpError, Response};
use crate::bindings::wasi::http::outgoing_handler;
use crate::bindings::wasi::http::types::{
    self as wasi_http, ErrorCode, Fields, FutureIncomingResponse, IncomingBody, IncomingResponse,
    Method, OutgoingBody, OutgoingRequest,
};
use crate::bindings::wasi::io::streams::StreamError;

/// Largest slice `blocking-write-and-flush` accepts in one call.
const MAX_WRITE_CHUNK: usize = 4096;

/// How many bytes to ask for per `blocking-read` of a response body.
const READ_CHUNK: u64 = 64 * 1024;

/// Maps a method name to the WIT `method` (standard names case-insensitively).
pub(crate) fn method(name: &str) -> Method {
    const KNOWN: [(&str, Method); 9] = [
        ("GET", Method::Get),
        ("HEAD", Method::Head),
        ("POST", Method::Post),
        ("PUT", Method::Put),
        ("DELETE", Method::Delete),
        ("CONNECT", Method::Connect),
        ("OPTIONS", Method::Options),
        ("TRACE", Method::Trace),
        ("PATCH", Method::Patch),
    ];
    KNOWN
        .into_iter()
        .find(|(known, _)| known.eq_ignore_ascii_case(name))
        .map_or_else(|| Method::Other(name.to_owned()), |(_, m)| m)
}

/// Sends one request and reads the whole response.
pub(crate) fn send(
    method: Method,
    target: &Target,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<Response, HttpError> {
    let request = build_request(method, target, headers, body)?;
    let outgoing_body = request
        .body()
        .map_err(|()| HttpError::Transport("request body already taken".into()))?;
    let future = outgoing_handler::handle(request, None).map_err(|e| from_code(e, target))?;
    if let Err(write_err) = write_body(outgoing_body, body.unwrap_or_default(), target) {
        // The host may have refused or failed the request meanwhile; its
        // reason beats "stream closed".
        return Err(match wait(&future, target) {
            Err(e) => e,
            Ok(_) => write_err,
        });
    }
    let response = wait(&future, target)?;
    read_response(response, target)
}

fn build_request(
    method: Method,
    target: &Target,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<OutgoingRequest, HttpError> {
    let fields = Fields::new();
    let content_length = body.map(|b| b.len().to_string());
    let extra = content_length.as_deref().map(|len| ("content-length", len));
    for (name, value) in headers.iter().copied().chain(extra) {
        fields
            .append(name, value.as_bytes())
            .map_err(|e| HttpError::Transport(format!("header `{name}` rejected: {e:?}")))?;
    }
    let request = OutgoingRequest::new(fields);
    let refused =
        |part: &str| HttpError::InvalidUrl(format!("{}: {part} rejected", target.original));
    request
        .set_method(&method)
        .map_err(|()| refused("method"))?;
    request
        .set_scheme(Some(&target.scheme))
        .map_err(|()| refused("scheme"))?;
    request
        .set_authority(Some(&target.authority))
        .map_err(|()| refused("authority"))?;
    request
        .set_path_with_query(Some(&target.path_with_query))
        .map_err(|()| refused("path"))?;
    Ok(request)
}

fn write_body(outgoing: OutgoingBody, bytes: &[u8], target: &Target) -> Result<(), HttpError> {
    {
        let stream = outgoing
            .write()
            .map_err(|()| HttpError::Transport("request body stream already taken".into()))?;
        for chunk in bytes.chunks(MAX_WRITE_CHUNK) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| from_stream(e, target))?;
        }
    }
    OutgoingBody::finish(outgoing, None).map_err(|e| from_code(e, target))
}

fn wait(future: &FutureIncomingResponse, target: &Target) -> Result<IncomingResponse, HttpError> {
    let pollable = future.subscribe();
    let outcome = loop {
        match future.get() {
            Some(outcome) => break outcome,
            None => pollable.block(),
        }
    };
    drop(pollable);
    match outcome {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(code)) => Err(from_code(code, target)),
        Err(()) => Err(HttpError::Transport("response already taken".into())),
    }
}

fn read_response(response: IncomingResponse, target: &Target) -> Result<Response, HttpError> {
    let status = response.status();
    let headers = response
        .headers()
        .entries()
        .into_iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value))
        .collect();
    let incoming = response
        .consume()
        .map_err(|()| HttpError::Transport("response body already taken".into()))?;
    let body = read_body(&incoming, target)?;
    drop(IncomingBody::finish(incoming));
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn read_body(incoming: &IncomingBody, target: &Target) -> Result<Vec<u8>, HttpError> {
    let stream = incoming
        .stream()
        .map_err(|()| HttpError::Transport("response body stream already taken".into()))?;
    let mut body = Vec::new();
    loop {
        match stream.blocking_read(READ_CHUNK) {
            Ok(chunk) => body.extend_from_slice(&chunk),
            Err(StreamError::Closed) => return Ok(body),
            Err(e) => return Err(from_stream(e, target)),
        }
    }
}

fn from_code(code: ErrorCode, target: &Target) -> HttpError {
    match code {
        // Both are the host's refusal: the URL, or the address it resolves to,
        // is not granted by the manifest.
        ErrorCode::HttpRequestDenied | ErrorCode::DestinationIpProhibited => HttpError::Denied {
            url: target.original.clone(),
        },
        other => HttpError::Transport(format!("{other:?}")),
    }
}

fn from_stream(e: StreamError, target: &Target) -> HttpError {
    match e {
        StreamError::Closed => HttpError::Transport("stream closed".into()),
        StreamError::LastOperationFailed(err) => match wasi_http::http_error_code(&err) {
            Some(code) => from_code(code, target),
            None => HttpError::Transport(err.to_debug_string()),
        },
    }
}
