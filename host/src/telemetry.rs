//! The host's own logs and traces: tracing to stderr (text or JSON lines) and,
//! only when an endpoint is configured, OpenTelemetry spans exported over
//! OTLP/HTTP (protobuf) with W3C trace-context propagation.

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer};

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, with the fields of the enclosing spans.
    Json,
}

/// Targets always switched off, whatever the filter says: wasmtime's
/// generated bindings trace every host call with its arguments (a guest's
/// URL, path or output, secrets and all) before the host can redact them.
pub const GUEST_ARGUMENT_TARGETS: [&str; 4] = [
    "wasmtime_wasi::p2::bindings",
    "wasmtime_wasi_http::p2::bindings",
    "wasmtime_wasi_io::bindings",
    "agent_host::bindings",
];

/// Time one OTLP export may take before it is abandoned.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Flushes and stops the trace exporter when dropped.
#[must_use = "dropping the guard stops trace export"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(e) = provider.shutdown() {
                eprintln!("warning: flushing OpenTelemetry spans: {e}");
            }
        }
    }
}

/// Installs the global subscriber. `otlp_endpoint` is the collector's base URL
/// (`http://collector:4318`); spans go to `<base>/v1/traces`. Must be called
/// inside the tokio runtime when an endpoint is given (export uses it).
pub fn init(
    filter: &str,
    format: LogFormat,
    otlp_endpoint: Option<&str>,
) -> Result<Telemetry, String> {
    let filter = log_filter(filter)?;
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
    };
    let (otel, provider) = match otlp_endpoint {
        None => (None, None),
        Some(base) => {
            let provider = tracer_provider(base)?;
            let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("agent-host"));
            opentelemetry::global::set_text_map_propagator(
                opentelemetry_sdk::propagation::TraceContextPropagator::new(),
            );
            (Some(layer), Some(provider))
        }
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()
        .map_err(|e| format!("installing the log subscriber: {e}"))?;
    Ok(Telemetry { provider })
}

/// The host's log filter: `spec` (tracing `EnvFilter` syntax) with
/// [`GUEST_ARGUMENT_TARGETS`] switched off and the MCP SDK at `warn` unless
/// `spec` names `rmcp`, for log lines and exported spans alike.
pub fn log_filter(spec: &str) -> Result<EnvFilter, String> {
    let mut filter = EnvFilter::try_new(spec).map_err(|e| format!("--log {spec:?}: {e}"))?;
    for target in GUEST_ARGUMENT_TARGETS {
        filter = filter.add_directive(format!("{target}=off").parse().expect("a valid directive"));
    }
    // The MCP SDK logs each stateless request's service life at info (three
    // lines per tools/call): warnings only, unless `--log` names it.
    if !spec.contains("rmcp") {
        filter = filter.add_directive("rmcp=warn".parse().expect("a valid directive"));
    }
    Ok(filter)
}

fn tracer_provider(base: &str) -> Result<SdkTracerProvider, String> {
    let url = url::Url::parse(base)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| {
            format!("--otlp-endpoint {base:?}: not an http(s) URL, e.g. http://otel-collector:4318")
        })?;
    let endpoint = format!("{}/v1/traces", url.as_str().trim_end_matches('/'));
    let client = OnRuntime {
        inner: opentelemetry_http::hyper::HyperClient::with_default_connector(EXPORT_TIMEOUT, None),
        runtime: tokio::runtime::Handle::try_current()
            .map_err(|_| "OTLP export needs the tokio runtime".to_string())?,
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint)
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| format!("OTLP exporter: {e}"))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name("agent-host")
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// The batch span processor exports from its own thread; the hyper client
/// needs the tokio runtime, so each export is spawned onto it.
#[derive(Debug)]
struct OnRuntime {
    inner: opentelemetry_http::hyper::HyperClient,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for OnRuntime {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let inner = self.inner.clone();
        self.runtime
            .spawn(async move { inner.send_bytes(request).await })
            .await?
    }
}

/// Makes `span` a child of the trace the request headers carry (W3C
/// `traceparent`), when trace export is on.
pub fn set_parent_from(span: &tracing::Span, headers: &http::HeaderMap) {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    if headers.contains_key("traceparent") {
        let parent = opentelemetry::global::get_text_map_propagator(|p| {
            p.extract(&opentelemetry_http::HeaderExtractor(headers))
        });
        let _ = span.set_parent(parent);
    }
}
