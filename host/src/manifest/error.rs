//! `ManifestError`, and the translation of serde's messages into field-path errors.

use std::path::PathBuf;

use serde_path_to_error::Segment;

/// Why a manifest was rejected. Every variant says what was wrong and where; field
/// errors display as `{path}: {message}`, e.g.
/// `spec.limits.memory: "64MB" is not a quantity; use 64Mi or 67108864`.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// A field is missing, unknown, or has a value that is not allowed. `path` uses the
    /// manifest's (camelCase) names and `[i]` for list items: `spec.capabilities.env[1].name`.
    #[error("{path}: {message}")]
    Field {
        /// Where in the document.
        path: String,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// The document as a whole is not an Agent, e.g. it is empty or holds several documents.
    #[error("{message}")]
    Document {
        /// What is wrong.
        message: String,
    },
    /// The text is not well-formed YAML.
    #[error("YAML syntax error at line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// The parser's description.
        message: String,
    },
    /// The manifest file could not be read.
    #[error("{}: cannot read: {message}", file.display())]
    Io {
        /// The file, as given.
        file: PathBuf,
        /// The operating system's description.
        message: String,
    },
    /// An error in a manifest file; displays as `{file}: {error}`.
    #[error("{}: {error}", file.display())]
    InFile {
        /// The file, as given.
        file: PathBuf,
        /// The error found in it.
        error: Box<ManifestError>,
    },
}

impl ManifestError {
    /// The field path of a field error, e.g. `spec.limits.memory`; empty for errors that
    /// are not about one field (syntax, I/O, the document as a whole).
    pub fn path(&self) -> &str {
        match self {
            ManifestError::Field { path, .. } => path,
            ManifestError::InFile { error, .. } => error.path(),
            ManifestError::Document { .. }
            | ManifestError::Syntax { .. }
            | ManifestError::Io { .. } => "",
        }
    }

    /// The description, without the field path or file name.
    pub fn message(&self) -> &str {
        match self {
            ManifestError::Field { message, .. }
            | ManifestError::Document { message }
            | ManifestError::Syntax { message, .. }
            | ManifestError::Io { message, .. } => message,
            ManifestError::InFile { error, .. } => error.message(),
        }
    }

    /// A field error.
    pub(crate) fn field(path: impl Into<String>, message: impl Into<String>) -> Self {
        ManifestError::Field {
            path: path.into(),
            message: message.into(),
        }
    }

    /// Attributes this error to a manifest file.
    pub(crate) fn in_file(self, file: impl Into<PathBuf>) -> Self {
        ManifestError::InFile {
            file: file.into(),
            error: Box::new(self),
        }
    }

    /// Converts a YAML parse error: one with a position is a syntax error, the rest
    /// (several documents, say) concern the document as a whole.
    pub(crate) fn from_yaml(err: &serde_norway::Error) -> Self {
        let text = err.to_string();
        match err.location() {
            Some(at) => {
                let mark = format!(" at line {} column {}", at.line(), at.column());
                ManifestError::Syntax {
                    line: at.line(),
                    column: at.column(),
                    message: text.replace(&mark, ""),
                }
            }
            None if text.contains("more than one document") => ManifestError::Document {
                message:
                    "the manifest holds more than one YAML document; put one Agent in each file"
                        .to_owned(),
            },
            None => ManifestError::Document { message: text },
        }
    }

    /// Converts a typed-deserialization error, rewording serde's standard messages into
    /// `path: message` with the offending key in the path.
    pub(crate) fn from_serde(err: &serde_path_to_error::Error<serde_norway::Error>) -> Self {
        let path = render_path(err.path().iter());
        let text = err.inner().to_string();
        if let Some(name) = between(&text, "missing field `", "`") {
            return Self::field(join(&path, name), "required");
        }
        if let Some(rest) = text.strip_prefix("unknown field `") {
            // serde_path_to_error has already put the unknown key at the end of the path.
            let allowed = backticked(rest.split_once(", ").map_or("", |(_, tail)| tail));
            let message = if allowed.is_empty() {
                "unknown field; no fields are allowed here".to_owned()
            } else {
                format!("unknown field; allowed: {}", allowed.join(", "))
            };
            return Self::field(path, message);
        }
        if let Some(rest) = text.strip_prefix("unknown variant `") {
            let (value, tail) = rest.split_once('`').unwrap_or((rest, ""));
            let allowed = backticked(tail).join(", ");
            return Self::field(
                path,
                format!("\"{value}\" is not allowed; use one of {allowed}"),
            );
        }
        for prefix in ["invalid type: ", "invalid value: "] {
            if let Some((found, expected)) = text
                .strip_prefix(prefix)
                .and_then(|r| r.rsplit_once(", expected "))
            {
                return Self::field(
                    path,
                    format!("expected {}, found {}", plain(expected), plain(found)),
                );
            }
        }
        Self::field(path, text)
    }
}

/// `a.b[2].c` from `serde_path_to_error`'s segments, with no leading dot at the root.
fn render_path<'a>(segments: impl Iterator<Item = &'a Segment>) -> String {
    let mut path = String::new();
    for segment in segments {
        match segment {
            Segment::Seq { index } => path = format!("{path}[{index}]"),
            Segment::Map { key } => path = join(&path, key),
            Segment::Enum { variant } => path = join(&path, variant),
            Segment::Unknown => path = join(&path, "?"),
        }
    }
    path
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// The text between the first `start` and the next `end`, if `text` starts with `start`.
fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    text.strip_prefix(start)?.split(end).next()
}

/// The names serde lists as `` `a`, `b` or `c` ``.
fn backticked(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// serde's type names in the manifest's vocabulary.
fn plain(name: &str) -> String {
    match name {
        "u64" => "an integer from 0 to 18446744073709551615".to_owned(),
        "u32" => "an integer from 0 to 4294967295".to_owned(),
        "i64" => "an integer".to_owned(),
        "a sequence" | "sequence" => "a list".to_owned(),
        "a map" | "map" => "a mapping".to_owned(),
        "unit value" => "null".to_owned(),
        _ if name.starts_with("struct ") => "a mapping".to_owned(),
        _ => name.to_owned(),
    }
}
