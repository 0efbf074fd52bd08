//! Where each field of a YAML document is: the line of every mapping key and sequence item, so a
//! lint message points at `spec.recurring[0].to.time` itself, not only at its document.
//!
//! Built from the YAML parser's events (the same parser serde-saphyr uses). A file the parser
//! cannot read to the end keeps the lines it found before the error; lookups fall back to the
//! nearest enclosing field, then to the document's first line.

use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Parser};

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Seg {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// The lines of one document.
#[derive(Debug, Default)]
struct DocLines {
    /// Line of the document's root node.
    root: usize,
    /// Line of each field path.
    paths: HashMap<Vec<Seg>, usize>,
}

/// The lines of every document of a file.
#[derive(Debug, Default)]
pub struct LineMap {
    docs: Vec<DocLines>,
}

enum Frame {
    Map { key: Option<String>, want_key: bool },
    Seq { next: usize },
}

struct Walker {
    stack: Vec<(Frame, Option<Seg>)>,
    doc: DocLines,
    root_seen: bool,
}

impl Walker {
    fn path(&self) -> Vec<Seg> {
        self.stack.iter().filter_map(|(_, seg)| seg.clone()).collect()
    }

    /// The segment a new node gets from its parent, and whether it is a key (not data).
    fn child_seg(&self) -> (Option<Seg>, bool) {
        match self.stack.last() {
            None => (None, false),
            Some((Frame::Map { want_key: true, .. }, _)) => (Some(Seg::Key("?".into())), true),
            Some((Frame::Map { key, .. }, _)) => (Some(Seg::Key(key.clone().unwrap_or_default())), false),
            Some((Frame::Seq { next }, _)) => (Some(Seg::Index(*next)), false),
        }
    }

    fn record(&mut self, seg: &Seg, line: usize) {
        let mut p = self.path();
        p.push(seg.clone());
        self.doc.paths.entry(p).or_insert(line);
    }

    fn note_root(&mut self, line: usize) {
        if !self.root_seen {
            self.root_seen = true;
            self.doc.root = line;
        }
    }

    /// A node has ended: the parent moves on.
    fn complete(&mut self) {
        match self.stack.last_mut() {
            Some((Frame::Map { key, want_key }, _)) => {
                if *want_key {
                    // A complex key ended; its value comes next.
                    *key = Some("?".into());
                    *want_key = false;
                } else {
                    *key = None;
                    *want_key = true;
                }
            }
            Some((Frame::Seq { next }, _)) => *next += 1,
            None => {}
        }
    }

    fn scalar(&mut self, value: &str, line: usize) {
        self.note_root(line);
        if let Some((Frame::Map { key, want_key }, _)) = self.stack.last_mut()
            && *want_key
        {
            *key = Some(value.to_string());
            *want_key = false;
            let seg = Seg::Key(value.to_string());
            self.record(&seg, line);
            return;
        }
        if let (Some(seg @ Seg::Index(_)), false) = self.child_seg() {
            self.record(&seg, line);
        }
        self.complete();
    }

    fn start(&mut self, frame: Frame, line: usize) {
        self.note_root(line);
        let (seg, is_key) = self.child_seg();
        if let (Some(s @ Seg::Index(_)), false) = (&seg, is_key) {
            let s = s.clone();
            self.record(&s, line);
        }
        self.stack.push((frame, seg));
    }

    fn end(&mut self) {
        self.stack.pop();
        self.complete();
    }
}

impl LineMap {
    /// Maps every document of `text`.
    pub fn build(text: &str) -> LineMap {
        let mut docs = Vec::new();
        let mut w = Walker { stack: Vec::new(), doc: DocLines::default(), root_seen: false };
        for item in Parser::new_from_str(text) {
            let Ok((event, span)) = item else { break };
            let line = span.start.line();
            match event {
                Event::DocumentStart(..) => {
                    w = Walker { stack: Vec::new(), doc: DocLines::default(), root_seen: false };
                }
                Event::DocumentEnd => {
                    if w.root_seen {
                        docs.push(std::mem::take(&mut w.doc));
                    }
                    w.root_seen = false;
                }
                Event::Scalar(value, ..) => w.scalar(&value, line),
                Event::Alias(_) => w.scalar("*", line),
                Event::MappingStart(..) => w.start(Frame::Map { key: None, want_key: true }, line),
                Event::SequenceStart(..) => w.start(Frame::Seq { next: 0 }, line),
                Event::MappingEnd | Event::SequenceEnd => w.end(),
                _ => {}
            }
        }
        if w.root_seen {
            docs.push(w.doc);
        }
        LineMap { docs }
    }

    /// The line of `field` (as kiln-schema and the apiserver print it, e.g.
    /// `spec.artifacts[0].image`) in the document that starts at `doc_line` (its first content
    /// line), before `next_doc_line`. Falls back to the nearest enclosing field, then `doc_line`.
    pub fn line_of(&self, doc_line: usize, next_doc_line: Option<usize>, field: &str) -> usize {
        let Some(doc) = self.docs.iter().find(|d| d.root >= doc_line && next_doc_line.is_none_or(|n| d.root < n))
        else {
            return doc_line;
        };
        let mut path = parse_path(field);
        while !path.is_empty() {
            if let Some(line) = doc.paths.get(&path) {
                return *line;
            }
            path.pop();
        }
        doc_line
    }
}

/// `spec.artifacts[0].image` → `[spec, artifacts, 0, image]`; `a.b[key].c` → `[a, b, key, c]`;
/// `<nil>` (the object itself) → `[]`.
pub fn parse_path(field: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    if field == "<nil>" {
        return out;
    }
    let mut cur = String::new();
    let mut chars = field.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '.' => {
                if !cur.is_empty() {
                    out.push(Seg::Key(std::mem::take(&mut cur)));
                }
            }
            '[' => {
                if !cur.is_empty() {
                    out.push(Seg::Key(std::mem::take(&mut cur)));
                }
                let mut inner = String::new();
                for c in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                    inner.push(c);
                }
                match inner.parse::<usize>() {
                    Ok(i) => out.push(Seg::Index(i)),
                    Err(_) => out.push(Seg::Key(inner)),
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(Seg::Key(cur));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# a comment\napiVersion: kiln.dev/v1alpha1\nkind: Release\nmetadata:\n  name: x\nspec:\n  artifacts:\n    - name: api\n      image: foo\n    - name: b\n  environments: [dev, stg]\n  target:\n    ecs:\n      environmentOverrides:\n        prod: {cluster: c}\n---\nkind: B\nspec:\n  x: 1\n";

    #[test]
    fn fields_and_items_have_lines() {
        let m = LineMap::build(TEXT);
        assert_eq!(m.line_of(2, Some(17), "spec.artifacts[0].image"), 9);
        assert_eq!(m.line_of(2, Some(17), "spec.artifacts[1]"), 10);
        assert_eq!(m.line_of(2, Some(17), "spec.artifacts[1].name"), 10);
        assert_eq!(m.line_of(2, Some(17), "spec.environments[1]"), 11);
        assert_eq!(m.line_of(2, Some(17), "spec.target.ecs.environmentOverrides[prod].cluster"), 15);
        // Missing fields fall back to the nearest parent, then the document.
        assert_eq!(m.line_of(2, Some(17), "spec.target.lambda.alias"), 12);
        assert_eq!(m.line_of(2, Some(17), "<nil>"), 2);
        // The second document.
        assert_eq!(m.line_of(17, None, "spec.x"), 19);
    }

    #[test]
    fn paths_parse_like_field_errors() {
        assert_eq!(
            parse_path("spec.a[0].b[key.x]"),
            vec![
                Seg::Key("spec".into()),
                Seg::Key("a".into()),
                Seg::Index(0),
                Seg::Key("b".into()),
                Seg::Key("key.x".into())
            ]
        );
        assert!(parse_path("<nil>").is_empty());
    }
}
