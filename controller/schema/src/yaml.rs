//! Multi-document YAML files (what `kubectl apply -f` and GitOps tools read), with the line each
//! document starts on, so `kubectl kiln lint` can print `file:line: message`.

use std::fmt;

use serde_json::Value;

use crate::error::FieldError;

/// One non-empty document of a YAML stream.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    /// Position among the non-empty documents of the stream, from 0 (empty documents, such as
    /// a trailing `---`, are skipped as kubectl skips them).
    pub index: usize,
    /// 1-based line of the document's first content line (comments, blank lines and the `---`
    /// marker are skipped), e.g. the `apiVersion:` line.
    pub line: usize,
    /// The document as JSON.
    pub value: Value,
}

/// A document that is not valid YAML (or not representable as JSON).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct YamlError {
    /// Position among the non-empty documents, from 0.
    pub index: usize,
    /// 1-based line of the document's first content line.
    pub line: usize,
    /// 1-based line of the error itself, when the parser knows it.
    pub error_line: Option<usize>,
    /// The parser's message.
    pub message: String,
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid YAML: {}", self.message)
    }
}

impl std::error::Error for YamlError {}

struct Chunk {
    /// 1-based line of the chunk's first line in the file.
    first_line: usize,
    text: String,
    content_line: Option<usize>,
}

fn is_marker(line: &str, marker: &str) -> bool {
    line.strip_prefix(marker).is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r']))
}

/// Splits a YAML stream at its `---` / `...` markers. A marker at the start of a line always
/// separates documents in YAML (it may not occur inside a scalar), so this split is exact.
fn split(text: &str) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    let mut current = Chunk { first_line: 1, text: String::new(), content_line: None };
    for (i, raw) in text.split('\n').enumerate() {
        let line_no = i + 1;
        let mut line = raw.to_string();
        if is_marker(raw, "---") || is_marker(raw, "...") {
            let end = is_marker(raw, "...");
            chunks.push(std::mem::replace(
                &mut current,
                Chunk { first_line: line_no, text: String::new(), content_line: None },
            ));
            if end {
                line = String::new();
            } else {
                // Keep what follows `---` on its line (e.g. `--- {a: 1}`), at its column.
                line = format!("   {}", &raw[3..]);
            }
        } else if raw.starts_with('%') {
            // Directives (%YAML, %TAG) precede a `---`; they mean nothing to a manifest.
            line = String::new();
        }
        let trimmed = line.trim();
        if current.content_line.is_none() && !trimmed.is_empty() && !trimmed.starts_with('#') {
            current.content_line = Some(line_no);
        }
        current.text.push_str(&line);
        current.text.push('\n');
    }
    chunks.push(current);
    chunks
}

/// Parses every document of a YAML stream. A document that fails to parse does not stop the
/// others.
pub fn parse_documents(text: &str) -> Vec<Result<Document, YamlError>> {
    let mut out = Vec::new();
    let mut index = 0;
    for chunk in split(text) {
        let Some(line) = chunk.content_line else {
            continue;
        };
        match serde_saphyr::from_str::<Value>(&chunk.text) {
            Ok(Value::Null) => continue,
            Ok(value) => out.push(Ok(Document { index, line, value })),
            Err(err) => {
                let offset = (chunk.first_line - 1) as u64;
                let message = err.render_with_options(serde_saphyr::render_options! {
                    snippets: serde_saphyr::SnippetMode::Off,
                    line_offset: offset,
                });
                let error_line = err.location().map(|l| l.line() as usize + chunk.first_line - 1).filter(|l| *l > 0);
                out.push(Err(YamlError { index, line, error_line, message }));
            }
        }
        index += 1;
    }
    out
}

/// What `kubectl kiln lint` reports for one problem in a file.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    /// The document's position in the file (from 0).
    pub index: usize,
    /// The line the document starts on (1-based); print as `file:line: message`.
    pub line: usize,
    /// `Kind/name` of the object, when the document has them.
    pub object: Option<String>,
    /// The problem.
    pub problem: Problem,
}

/// A problem in a document.
#[derive(Clone, Debug, PartialEq)]
pub enum Problem {
    /// The document is not valid YAML.
    Yaml(YamlError),
    /// A field the apiserver would reject.
    Field(FieldError),
}

impl fmt::Display for Finding {
    /// `line: Kind/name: message`; prefix the file name for `file:line: ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.line)?;
        if let Some(object) = &self.object {
            write!(f, "{object}: ")?;
        }
        match &self.problem {
            Problem::Yaml(e) => write!(f, "{e}"),
            Problem::Field(e) => write!(f, "{e}"),
        }
    }
}

/// `Kind/name` (or `Kind/generateName*`) of a manifest, for messages.
pub(crate) fn object_label(value: &Value) -> Option<String> {
    let kind = value.get("kind")?.as_str()?;
    let meta = value.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| meta.and_then(|m| m.get("generateName")).and_then(Value::as_str).map(|g| format!("{g}*")));
    Some(match name {
        Some(n) => format!("{kind}/{n}"),
        None => kind.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_with_lines() {
        let text = "# header\n\napiVersion: v1\nkind: A\n---\n# c\nkind: B\n---\n---\n";
        let docs: Vec<Document> = parse_documents(text).into_iter().map(|d| d.expect("parses")).collect();
        assert_eq!(docs.len(), 2);
        assert_eq!((docs[0].index, docs[0].line), (0, 3));
        assert_eq!((docs[1].index, docs[1].line), (1, 7));
        assert_eq!(docs[1].value["kind"], "B");
    }

    #[test]
    fn a_bad_document_does_not_hide_the_others() {
        let text = "kind: A\n---\nkind: [unclosed\n---\nkind: C\n";
        let docs = parse_documents(text);
        assert_eq!(docs.len(), 3);
        assert!(docs[0].is_ok());
        let err = docs[1].as_ref().expect_err("bad yaml");
        assert_eq!((err.index, err.line), (1, 3));
        assert!(docs[2].is_ok());
    }

    #[test]
    fn content_after_the_marker() {
        let docs = parse_documents("--- {kind: A}\n");
        let doc = docs[0].as_ref().expect("parses");
        assert_eq!(doc.line, 1);
        assert_eq!(doc.value["kind"], "A");
    }
}
