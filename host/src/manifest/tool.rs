//! `spec.tool`: how the agent is described when served as an MCP tool
//! (`/mcp` of `agent-host serve`, `agent-host mcp`). The tool is named after
//! the agent; its arguments are the task input.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Longest `spec.tool.description`, in bytes: it is sent in every `tools/list`.
pub const MAX_TOOL_DESCRIPTION_BYTES: usize = 4096;
/// Largest `inputSchema` or `outputSchema`, serialised, in bytes: schemas are
/// compiled at load and sent in every `tools/list`.
pub const MAX_TOOL_SCHEMA_BYTES: usize = 64 * 1024;

/// The agent as an MCP tool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ToolSpec {
    /// What the tool does, for the model that chooses tools.
    pub description: String,
    /// JSON Schema (2020-12 unless `$schema` says otherwise) of the tool's
    /// arguments, which are the task input; `type` must be `object`.
    /// Arguments that do not match are refused before the agent runs.
    #[schemars(schema_with = "json_object_schema")]
    pub input_schema: Map<String, Value>,
    /// JSON Schema of the agent's output (`type: object`): when set, the
    /// output is returned as `structuredContent` and must match it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_json_object_schema")]
    pub output_schema: Option<Map<String, Value>>,
    /// MCP tool annotations: hints for clients, not enforced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<ToolAnnotationsSpec>,
}

/// MCP tool annotations (hints only; the grants are what the agent may do).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ToolAnnotationsSpec {
    /// Human-readable title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The tool does not modify its environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only_hint: Option<bool>,
    /// The tool may perform destructive updates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destructive_hint: Option<bool>,
    /// Calling it again with the same arguments has no further effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotent_hint: Option<bool>,
    /// The tool interacts with an open world of external entities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_world_hint: Option<bool>,
}

/// A free-form JSON object in the CRD (a JSON Schema is not itself structural).
fn json_object_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

fn optional_json_object_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = json_object_schema(g);
    schema.insert("nullable".into(), true.into());
    schema
}

/// Checks that `schema` (at `path`) is a JSON Schema of an object that can be
/// compiled offline: a `$ref` to anything outside it fails here, at load.
pub(super) fn check_schema(schema: &Map<String, Value>) -> Result<(), String> {
    let size = serde_json::to_vec(schema).map_or(usize::MAX, |v| v.len());
    if size > MAX_TOOL_SCHEMA_BYTES {
        return Err(format!(
            "{size} bytes of JSON Schema; at most {MAX_TOOL_SCHEMA_BYTES}"
        ));
    }
    match schema.get("type") {
        Some(Value::String(t)) if t == "object" => {}
        _ => return Err(
            "must describe a JSON object: set `type: object` (MCP tools take and return objects)"
                .into(),
        ),
    }
    compile(&Value::Object(schema.clone())).map(drop)
}

/// Compiles a schema checked by [`check_schema`] (meta-schema validated, no
/// network or file access: the crate's resolvers are compiled out).
pub fn compile(schema: &Value) -> Result<jsonschema::Validator, String> {
    jsonschema::validator_for(schema).map_err(|e| {
        let at = e.instance_path().to_string();
        if matches!(e.kind(), jsonschema::error::ValidationErrorKind::Referencing(_)) {
            // The crate's own text names its compiled-out resolver features: keep the resource only.
            let text = e.to_string();
            let what = text.split(" and retrieving").next().unwrap_or(&text);
            format!("{what}: a $ref must point inside the schema (shared parts go under $defs); nothing is fetched")
        } else if at.is_empty() {
            format!("not a valid JSON Schema: {e}")
        } else {
            format!("not a valid JSON Schema at {at}: {e}")
        }
    })
}

/// A [`ToolSpec`] with its schemas compiled once, at load (phase *configure*).
pub struct CompiledTool {
    /// The declaration.
    pub spec: ToolSpec,
    /// `spec.inputSchema`, shared: tool descriptions (`tools/list`) take it
    /// without copying the schema per request.
    pub input_schema: Arc<Map<String, Value>>,
    /// `spec.outputSchema`, shared likewise.
    pub output_schema: Option<Arc<Map<String, Value>>>,
    input: jsonschema::Validator,
    output: Option<jsonschema::Validator>,
}

impl std::fmt::Debug for CompiledTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledTool")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

/// Why a value does not match a tool's schema: where, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaMismatch {
    /// JSON Pointer to the offending value (`""` is the whole value).
    pub field: String,
    /// What is wrong there.
    pub message: String,
}

impl ToolSpec {
    /// Compiles both schemas (already checked by validation).
    pub fn compile(&self) -> Result<CompiledTool, (&'static str, String)> {
        let input = compile(&Value::Object(self.input_schema.clone()))
            .map_err(|m| ("spec.tool.inputSchema", m))?;
        let output = match &self.output_schema {
            Some(s) => Some(
                compile(&Value::Object(s.clone())).map_err(|m| ("spec.tool.outputSchema", m))?,
            ),
            None => None,
        };
        Ok(CompiledTool {
            spec: self.clone(),
            input_schema: Arc::new(self.input_schema.clone()),
            output_schema: self.output_schema.clone().map(Arc::new),
            input,
            output,
        })
    }
}

impl CompiledTool {
    /// The first violation of the input schema by `arguments`, if any.
    pub fn check_input(&self, arguments: &Value) -> Result<(), SchemaMismatch> {
        first_error(&self.input, arguments)
    }

    /// Whether an output schema is declared.
    pub fn has_output_schema(&self) -> bool {
        self.output.is_some()
    }

    /// The first violation of the output schema by `output`, if one is declared.
    pub fn check_output(&self, output: &Value) -> Result<(), SchemaMismatch> {
        match &self.output {
            Some(v) => first_error(v, output),
            None => Ok(()),
        }
    }
}

/// The first violation of `validator`'s schema by `value`.
pub fn first_error(validator: &jsonschema::Validator, value: &Value) -> Result<(), SchemaMismatch> {
    match validator.iter_errors(value).next() {
        None => Ok(()),
        Some(e) => Err(SchemaMismatch {
            field: e.instance_path().to_string(),
            message: e.to_string(),
        }),
    }
}
