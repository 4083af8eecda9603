//! Rules that field types cannot express: presence, bounds, uniqueness, cross-field checks.
//! Each `validate_*` returns the first violation as a field-path error.

use std::collections::HashMap;
use std::path::{Component, Path};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::limits::{
    MAX_DENIALS, MAX_INPUT_BYTES, MAX_MEMORY, MAX_OUTPUT_BYTES, MAX_QUEUE, MAX_TIMEOUT, MIN_MEMORY,
};
use super::{
    AgentSpec, Capabilities, ComponentSource, EnvVar, HttpRuleSpec, KeyValueSpec, Limits, LlmSpec,
    ManifestError, McpServerSpec, MountSpec, SecretKeyRef,
};

type Result = std::result::Result<(), ManifestError>;

const LABEL_RULE: &str =
    "at most 63 lowercase letters, digits and -, starting and ending with a letter or digit";
const ENV_NAME_RULE: &str = "use letters, digits and _, not starting with a digit";

fn fail(path: impl Into<String>, message: impl Into<String>) -> Result {
    Err(ManifestError::field(path, message))
}

/// `metadata.name` is required and, like `metadata.namespace`, a DNS-1123 label.
pub(super) fn validate_metadata(metadata: &ObjectMeta) -> Result {
    match metadata.name.as_deref() {
        None | Some("") => {
            return fail(
                "metadata.name",
                "required; use a DNS-1123 label such as incident-responder",
            )
        }
        Some(name) if !is_dns1123_label(name) => return fail("metadata.name", not_a_label(name)),
        Some(_) => {}
    }
    match metadata.namespace.as_deref() {
        Some(namespace) if !is_dns1123_label(namespace) => {
            fail("metadata.namespace", not_a_label(namespace))
        }
        _ => Ok(()),
    }
}

/// The spec as a whole: component, limits, then each capability.
pub(super) fn validate_spec(spec: &AgentSpec) -> Result {
    validate_component(&spec.component)?;
    validate_limits(&spec.limits)?;
    validate_capabilities(&spec.capabilities)?;
    validate_callers(spec.callers.as_deref())?;
    spec.tool.as_ref().map_or(Ok(()), validate_tool)
}

/// Most names in `spec.callers`: the list is looked up on every request.
pub const MAX_CALLERS: usize = 256;
/// Longest caller name (a Kubernetes user name is at most this long in practice).
const MAX_CALLER_NAME: usize = 512;

/// `spec.callers`: not empty (omit it to allow any authenticated caller), no
/// duplicates, names of visible characters.
fn validate_callers(callers: Option<&[String]>) -> Result {
    let Some(callers) = callers else {
        return Ok(());
    };
    if callers.is_empty() {
        return fail(
            "spec.callers",
            "empty: it would allow no one; omit it to allow any authenticated caller",
        );
    }
    if callers.len() > MAX_CALLERS {
        return fail(
            "spec.callers",
            format!("{} names; at most {MAX_CALLERS}", callers.len()),
        );
    }
    for (i, name) in callers.iter().enumerate() {
        if name.is_empty()
            || name.len() > MAX_CALLER_NAME
            || !name.bytes().all(|b| b.is_ascii_graphic())
        {
            return fail(
                format!("spec.callers[{i}]"),
                format!("{name:?}: a caller name is 1 to {MAX_CALLER_NAME} visible ASCII characters (a --caller-tokens file name or a Kubernetes user name such as system:serviceaccount:ns:name)"),
            );
        }
    }
    if let Some(i) = first_duplicate(callers) {
        return fail(
            format!("spec.callers[{i}]"),
            format!("{:?} is listed twice", callers[i]),
        );
    }
    Ok(())
}

/// A description within bounds; input and output schemas that compile.
fn validate_tool(tool: &super::ToolSpec) -> Result {
    if tool.description.trim().is_empty() {
        return fail(
            "spec.tool.description",
            "required: say what the tool does, for the model choosing tools",
        );
    }
    if tool.description.len() > super::MAX_TOOL_DESCRIPTION_BYTES {
        return fail(
            "spec.tool.description",
            format!(
                "{} bytes; at most {}",
                tool.description.len(),
                super::MAX_TOOL_DESCRIPTION_BYTES
            ),
        );
    }
    super::tool::check_schema(&tool.input_schema).or_else(|m| fail("spec.tool.inputSchema", m))?;
    match &tool.output_schema {
        Some(schema) => {
            super::tool::check_schema(schema).or_else(|m| fail("spec.tool.outputSchema", m))
        }
        None => Ok(()),
    }
}

/// Exactly one of `path` and `image`, and neither empty.
fn validate_component(component: &ComponentSource) -> Result {
    match (&component.path, &component.image) {
        (Some(_), Some(_)) => fail("spec.component", "set either path or image, not both"),
        (None, None) => fail(
            "spec.component",
            "set one of path (a local .wasm file) or image (an OCI reference)",
        ),
        (Some(path), None) if path.as_os_str().is_empty() => {
            fail("spec.component.path", "must not be empty")
        }
        (None, Some(image)) if image.is_empty() => {
            fail("spec.component.image", "must not be empty")
        }
        (None, Some(image)) => super::reference::Reference::parse(image)
            .map(drop)
            .or_else(|m| fail("spec.component.image", format!("{image}: {m}"))),
        _ => Ok(()),
    }
}

/// Every limit above zero; memory, timeout and output size within their bounds.
fn validate_limits(limits: &Limits) -> Result {
    let counts = [
        ("fuel", limits.fuel),
        ("memory", limits.memory.bytes()),
        ("maxConcurrency", limits.max_concurrency.into()),
        ("maxHttpRequests", limits.max_http_requests.into()),
        (
            "maxHttpResponseBytes",
            limits.max_http_response_bytes.bytes(),
        ),
        ("maxOutputBytes", limits.max_output_bytes.bytes()),
        ("maxInputBytes", limits.max_input_bytes.bytes()),
        ("maxLogBytes", limits.max_log_bytes.bytes()),
        ("maxWriteBytes", limits.max_write_bytes.bytes()),
        ("maxTableElements", limits.max_table_elements.into()),
        ("maxInstances", limits.max_instances.into()),
        ("maxResources", limits.max_resources.into()),
        ("hostcallBytes", limits.hostcall_bytes.bytes()),
    ];
    if let Some((name, _)) = counts.iter().find(|(_, value)| *value == 0) {
        return fail(format!("spec.limits.{name}"), "must be greater than 0");
    }
    if limits.memory < MIN_MEMORY {
        let message = format!(
            "{} is below the minimum of {MIN_MEMORY} (one wasm page)",
            limits.memory
        );
        return fail("spec.limits.memory", message);
    }
    if limits.memory > MAX_MEMORY {
        let message = format!(
            "{} is above the maximum of {MAX_MEMORY} (the wasm32 address space)",
            limits.memory
        );
        return fail("spec.limits.memory", message);
    }
    if limits.timeout.as_duration().is_zero() {
        return fail("spec.limits.timeout", "must be greater than 0s");
    }
    if limits.timeout > MAX_TIMEOUT {
        return fail(
            "spec.limits.timeout",
            format!("{} is above the maximum of {MAX_TIMEOUT}", limits.timeout),
        );
    }
    if limits.max_output_bytes > MAX_OUTPUT_BYTES {
        let message = format!(
            "{} is above the maximum of {MAX_OUTPUT_BYTES}",
            limits.max_output_bytes
        );
        return fail("spec.limits.maxOutputBytes", message);
    }
    if limits.max_input_bytes > MAX_INPUT_BYTES {
        let message = format!(
            "{} is above the maximum of {MAX_INPUT_BYTES}",
            limits.max_input_bytes
        );
        return fail("spec.limits.maxInputBytes", message);
    }
    if limits.max_queue > MAX_QUEUE {
        let message = format!(
            "{} is above the maximum of {MAX_QUEUE} (waiting tasks are held in memory)",
            limits.max_queue
        );
        return fail("spec.limits.maxQueue", message);
    }
    if limits.max_denials > MAX_DENIALS {
        let message = format!(
            "{} is above the maximum of {MAX_DENIALS} (each denial is audited)",
            limits.max_denials
        );
        return fail("spec.limits.maxDenials", message);
    }
    Ok(())
}

/// Each capability's own rules.
fn validate_capabilities(caps: &Capabilities) -> Result {
    validate_http(&caps.http)?;
    validate_filesystem(&caps.filesystem)?;
    validate_env(&caps.env)?;
    if let Some(kv) = &caps.key_value {
        validate_key_value(kv)?;
    }
    if let Some(llm) = &caps.llm {
        validate_llm(llm)?;
    }
    validate_mcp(&caps.mcp)?;
    Ok(())
}

/// Methods listed, none twice; no URL granted twice (merge the methods instead).
fn validate_http(rules: &[HttpRuleSpec]) -> Result {
    let mut seen_urls = HashMap::new();
    for (i, rule) in rules.iter().enumerate() {
        let path = format!("spec.capabilities.http[{i}]");
        if rule.methods.is_empty() {
            return fail(
                format!("{path}.methods"),
                "must list at least one method; omit it for [GET]",
            );
        }
        if let Some(j) = first_duplicate(&rule.methods) {
            return fail(
                format!("{path}.methods[{j}]"),
                format!("{} is listed twice", rule.methods[j]),
            );
        }
        validate_cidrs(&path, &rule.allowed_cidrs, rule.allow_all_addresses)?;
        if let Some(first) = seen_urls.insert(&rule.url, i) {
            let message = format!(
                "same url as spec.capabilities.http[{first}]; merge their methods into one rule"
            );
            return fail(format!("{path}.url"), message);
        }
    }
    Ok(())
}

/// `allowedCidrs` of an HTTP rule or MCP server: CIDRs, none of them every
/// address unless `allowAllAddresses` says so.
fn validate_cidrs(path: &str, cidrs: &[String], allow_all: bool) -> Result {
    for (j, cidr) in cidrs.iter().enumerate() {
        match cidr.parse::<ipnet::IpNet>() {
            Err(_) => {
                return fail(
                    format!("{path}.allowedCidrs[{j}]"),
                    format!("\"{cidr}\" is not a CIDR; use e.g. 10.96.0.0/12 or fd00::/8"),
                )
            }
            Ok(net) if net.prefix_len() == 0 && !allow_all => {
                return fail(
                    format!("{path}.allowedCidrs[{j}]"),
                    format!("\"{cidr}\" grants every address; set allowAllAddresses: true to mean that, or list narrower ranges"),
                )
            }
            Ok(_) => {}
        }
    }
    Ok(())
}

/// Unique label names, unique valid tool names, a valid credential header,
/// budgets within bounds.
fn validate_mcp(servers: &[McpServerSpec]) -> Result {
    let mut names = HashMap::new();
    for (i, server) in servers.iter().enumerate() {
        let path = format!("spec.capabilities.mcp[{i}]");
        if !is_dns1123_label(&server.name) {
            return fail(format!("{path}.name"), not_a_label(&server.name));
        }
        if let Some(first) = names.insert(server.name.as_str(), i) {
            return fail(
                format!("{path}.name"),
                format!("\"{}\" is already the name of mcp[{first}]", server.name),
            );
        }
        for (j, tool) in server.tools.iter().enumerate() {
            let ok = !tool.is_empty()
                && tool.len() <= MAX_MCP_TOOL_NAME
                && tool
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'));
            if !ok {
                return fail(
                    format!("{path}.tools[{j}]"),
                    format!("\"{tool}\" is not an MCP tool name (1 to {MAX_MCP_TOOL_NAME} letters, digits, _, -, . and /)"),
                );
            }
        }
        if let Some(j) = first_duplicate(&server.tools) {
            return fail(
                format!("{path}.tools[{j}]"),
                format!("\"{}\" is listed twice", server.tools[j]),
            );
        }
        validate_cidrs(&path, &server.allowed_cidrs, server.allow_all_addresses)?;
        if let Some(credentials) = &server.credentials {
            let at = format!("{path}.credentials");
            validate_secret_key_ref(&format!("{at}.secretKeyRef"), &credentials.secret_key_ref)?;
            if let Some(header) = &credentials.header {
                let reserved = RESERVED_MCP_HEADERS
                    .iter()
                    .any(|r| r.eq_ignore_ascii_case(header));
                if http::HeaderName::from_bytes(header.as_bytes()).is_err() || reserved {
                    return fail(
                        format!("{at}.header"),
                        format!("\"{header}\" is not a header the host can send the credential in (an HTTP header name other than {})", RESERVED_MCP_HEADERS.join(", ")),
                    );
                }
            }
            if let Some(scheme) = &credentials.scheme {
                if !scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-')
                    || scheme.len() > 32
                {
                    return fail(
                        format!("{at}.scheme"),
                        format!("\"{scheme}\" is not an authentication scheme (letters, digits and -, e.g. Bearer; \"\" for none)"),
                    );
                }
            }
        }
        if server.max_calls_per_invocation == Some(0) {
            return fail(
                format!("{path}.maxCallsPerInvocation"),
                "must be greater than 0; omit it for the default of 10",
            );
        }
        if let Some(bytes) = server.max_response_bytes_per_invocation {
            if bytes.bytes() == 0 || bytes.bytes() > MAX_MCP_RESPONSE_BYTES {
                return fail(
                    format!("{path}.maxResponseBytesPerInvocation"),
                    format!(
                        "{} is outside 1 to 16Mi (the host holds responses in memory)",
                        bytes.bytes()
                    ),
                );
            }
        }
        if server.timeout.is_some_and(|t| t.as_duration().is_zero()) {
            return fail(
                format!("{path}.timeout"),
                "must be greater than 0; omit it for 30s",
            );
        }
    }
    Ok(())
}

/// Longest MCP tool name a grant may list.
const MAX_MCP_TOOL_NAME: usize = 128;
/// Most bytes a grant may let one server send in one invocation.
pub const MAX_MCP_RESPONSE_BYTES: u64 = 16 << 20;
/// Headers the host's MCP client sets itself.
const RESERVED_MCP_HEADERS: [&str; 7] = [
    "host",
    "content-type",
    "content-length",
    "accept",
    "mcp-session-id",
    "mcp-protocol-version",
    "transfer-encoding",
];

/// Host paths without `..` (relative ones resolve against the manifest's
/// directory on local runs); absolute guest paths without `..`, unique.
fn validate_filesystem(mounts: &[MountSpec]) -> Result {
    let mut seen = HashMap::new();
    for (i, mount) in mounts.iter().enumerate() {
        let path = format!("spec.capabilities.filesystem[{i}]");
        check_no_parent_dir(&format!("{path}.hostPath"), &mount.host_path)?;
        let guest = Path::new(&mount.guest_path);
        check_absolute_path(&format!("{path}.guestPath"), guest)?;
        let normalised: Vec<_> = guest.components().collect();
        if let Some(first) = seen.insert(normalised, i) {
            return fail(
                format!("{path}.guestPath"),
                format!(
                    "\"{}\" is already mounted by filesystem[{first}]",
                    mount.guest_path
                ),
            );
        }
    }
    Ok(())
}

fn check_absolute_path(field: &str, path: &Path) -> Result {
    if !path.is_absolute() {
        return fail(
            field,
            format!("\"{}\" is not absolute; start it with /", path.display()),
        );
    }
    check_no_parent_dir(field, path)
}

fn check_no_parent_dir(field: &str, path: &Path) -> Result {
    if path.components().any(|c| c == Component::ParentDir) {
        return fail(
            field,
            format!(
                "\"{}\" contains ..; write the path without it",
                path.display()
            ),
        );
    }
    Ok(())
}

/// Valid unique names; exactly one of `value` and `valueFrom`.
fn validate_env(vars: &[EnvVar]) -> Result {
    let mut seen = HashMap::new();
    for (i, var) in vars.iter().enumerate() {
        let path = format!("spec.capabilities.env[{i}]");
        if !is_env_name(&var.name) {
            let message = format!("\"{}\" is not a variable name; {ENV_NAME_RULE}", var.name);
            return fail(format!("{path}.name"), message);
        }
        if let Some(first) = seen.insert(var.name.as_str(), i) {
            return fail(
                format!("{path}.name"),
                format!("\"{}\" is already set by env[{first}]", var.name),
            );
        }
        match (&var.value, &var.value_from) {
            (Some(_), Some(_)) => return fail(path, "set either value or valueFrom, not both"),
            (None, None) => return fail(path, "set one of value or valueFrom"),
            (None, Some(from)) => validate_secret_key_ref(
                &format!("{path}.valueFrom.secretKeyRef"),
                &from.secret_key_ref,
            )?,
            (Some(_), None) => {}
        }
    }
    Ok(())
}

/// A budget above zero; bucket names non-empty, short and unique.
fn validate_key_value(kv: &KeyValueSpec) -> Result {
    if kv.max_bytes.bytes() == 0 {
        return fail(
            "spec.capabilities.keyValue.maxBytes",
            "must be greater than 0",
        );
    }
    let mut seen = HashMap::new();
    for (i, bucket) in kv.buckets.iter().enumerate() {
        let path = format!("spec.capabilities.keyValue.buckets[{i}]");
        if bucket.is_empty() {
            return fail(path, "must not be empty");
        }
        if bucket.len() > super::capabilities::MAX_BUCKET_NAME_BYTES {
            return fail(
                path,
                format!(
                    "is {} bytes; bucket names are at most {} bytes",
                    bucket.len(),
                    super::capabilities::MAX_BUCKET_NAME_BYTES
                ),
            );
        }
        if let Some(first) = seen.insert(bucket.as_str(), i) {
            return fail(
                path,
                format!("\"{bucket}\" is already listed at buckets[{first}]"),
            );
        }
    }
    Ok(())
}

/// A model named, a valid secret reference, and any caps above zero.
fn validate_llm(llm: &LlmSpec) -> Result {
    const PATH: &str = "spec.capabilities.llm";
    if llm.model.trim().is_empty() {
        return fail(
            format!("{PATH}.model"),
            "must name a model, e.g. gpt-4o-mini",
        );
    }
    if let Some(secret) = &llm.api_key_secret_ref {
        validate_secret_key_ref(&format!("{PATH}.apiKeySecretRef"), secret)?;
    }
    let caps = [
        ("maxTokensPerInvocation", llm.max_tokens_per_invocation),
        (
            "maxRequestsPerInvocation",
            llm.max_requests_per_invocation.map(u64::from),
        ),
        ("tokensPerMinute", llm.tokens_per_minute),
    ];
    if let Some((name, _)) = caps.iter().find(|(_, value)| *value == Some(0)) {
        return fail(
            format!("{PATH}.{name}"),
            "must be greater than 0; omit it for no cap",
        );
    }
    Ok(())
}

/// The Secret name is a DNS-1123 subdomain and the key a valid Secret key.
fn validate_secret_key_ref(path: &str, secret: &SecretKeyRef) -> Result {
    let subdomain = secret.name.len() <= 253 && secret.name.split('.').all(is_dns1123_label);
    if !subdomain {
        return fail(
            format!("{path}.name"),
            format!(
                "\"{}\" is not a Secret name (a DNS-1123 subdomain such as openai-key)",
                secret.name
            ),
        );
    }
    let key_chars = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if secret.key.is_empty() || secret.key.len() > 253 || !secret.key.chars().all(key_chars) {
        return fail(
            format!("{path}.key"),
            format!(
                "\"{}\" is not a Secret key; use letters, digits, -, _ and .",
                secret.key
            ),
        );
    }
    Ok(())
}

/// Lowercase letters, digits and `-`; starts and ends alphanumeric; at most 63 characters.
fn is_dns1123_label(s: &str) -> bool {
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    s.len() <= 63
        && edge_ok(s.chars().next())
        && edge_ok(s.chars().last())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn not_a_label(s: &str) -> String {
    format!("\"{s}\" is not a DNS-1123 label ({LABEL_RULE})")
}

/// `[A-Za-z_][A-Za-z0-9_]*`
fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The index of the first item equal to an earlier one.
fn first_duplicate<T: PartialEq>(items: &[T]) -> Option<usize> {
    (1..items.len()).find(|&j| items[..j].contains(&items[j]))
}
