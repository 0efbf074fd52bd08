//! Every manifest in `examples/invalid/` is rejected with the message its header names
//! (`# expect: <fragment>` lines), and by nothing else: each file breaks one rule. Update cases in
//! `examples/invalid/updates/` hold two documents, the stored object and the refused change.
//! Adding a case is adding a file.

mod common;

use common::{documents, examples_dir, expectations, file_name, render, yaml_files};
use kiln_schema::FieldError;

/// The note the apiserver adds when a structural error keeps it from running the CEL rules.
const CEL_SKIPPED: &str = "some validation rules were not checked";

/// Every expected fragment appears in some error, and every error is expected.
fn check(path: &std::path::Path, errs: &[FieldError], expected: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    let rendered: Vec<String> = errs.iter().map(ToString::to_string).collect();
    for fragment in expected {
        if !rendered.iter().any(|e| e.contains(fragment.as_str())) {
            problems.push(format!("{}: no error contains {fragment:?}; got:\n{}", file_name(path), render(errs)));
        }
    }
    for e in &rendered {
        if !expected.iter().any(|f| e.contains(f.as_str())) {
            problems.push(format!("{}: unexpected error (the case should break one rule): {e}", file_name(path)));
        }
    }
    problems
}

#[test]
fn invalid_manifests_are_rejected_with_their_message() {
    let mut problems = Vec::new();
    let files = yaml_files(&examples_dir().join("invalid"));
    for path in &files {
        let expected = expectations(path);
        let docs = documents(path);
        assert_eq!(docs.len(), 1, "{} should hold one manifest", path.display());
        match kiln_schema::validate_create(&docs[0]) {
            Ok(_) => problems.push(format!("{}: accepted, expected {expected:?}", file_name(path))),
            Err(errs) => problems.extend(check(path, &errs, &expected)),
        }
    }
    assert!(files.len() >= 15, "only {} invalid cases", files.len());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn invalid_updates_are_rejected_and_no_op_updates_are_not() {
    let mut problems = Vec::new();
    let files = yaml_files(&examples_dir().join("invalid/updates"));
    for path in &files {
        let name = file_name(path);
        let expected = expectations(path);
        let docs = documents(path);
        assert_eq!(docs.len(), 2, "{} should hold two documents: old, then new", path.display());
        let (old, new) = (&docs[0], &docs[1]);
        // Each side is a valid object on its own: only the transition is refused.
        for (label, doc) in [("old", old), ("new", new)] {
            if let Err(errs) = kiln_schema::validate_create(doc) {
                problems.push(format!("{name}: the {label} object is not valid by itself:\n{}", render(&errs)));
            }
        }
        match kiln_schema::validate_update(new, old) {
            Ok(_) => problems.push(format!("{name}: update accepted, expected {expected:?}")),
            Err(errs) => problems.extend(check(path, &errs, &expected)),
        }
        // Transition rules must not reject an update that changes nothing.
        for (label, doc) in [("old", old), ("new", new)] {
            if let Err(errs) = kiln_schema::validate_update(doc, doc) {
                problems.push(format!("{name}: no-op update of the {label} object rejected:\n{}", render(&errs)));
            }
        }
    }
    assert!(files.len() >= 7, "only {} update cases", files.len());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn cel_skipped_note_is_only_expected_with_structural_errors() {
    // Guard the header convention: a case expecting the CEL-skipped note must also expect a
    // structural error (Required, type, enum, size), otherwise its fixture is wrong.
    for path in yaml_files(&examples_dir().join("invalid")) {
        let expected = expectations(&path);
        if expected.iter().any(|e| e.contains(CEL_SKIPPED)) {
            assert!(expected.len() >= 2, "{} expects only the CEL-skipped note", path.display());
        }
    }
}
