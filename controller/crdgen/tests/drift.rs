//! The checked-in CRD YAML must be exactly what the types generate. On failure, run
//! `cargo run -p kiln-crdgen` and commit the result.

use std::path::Path;

#[test]
fn checked_in_crds_match_the_types() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dirs = kiln_crdgen::targets(&root);
    assert!(!dirs.is_empty());
    for dir in dirs {
        for (file, yaml) in kiln_crdgen::render_all() {
            let yaml = yaml.unwrap_or_else(|e| panic!("cannot render {file}: {e}"));
            let path = dir.join(file);
            let current = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}; run `cargo run -p kiln-crdgen`", path.display()));
            assert!(
                current == yaml,
                "{} differs from what the kiln-api types generate; run `cargo run -p kiln-crdgen` and commit the result",
                path.display()
            );
        }
    }
}

#[test]
fn every_crd_is_in_the_kiln_group_with_a_status_subresource() {
    for (file, crd) in kiln_api::crds() {
        assert_eq!(crd.spec.group, "kiln.dev", "{file}");
        assert!(file.starts_with(&crd.spec.names.plural), "{file}");
        let names = &crd.spec.names;
        assert_eq!(names.categories.as_deref(), Some(&["kiln".to_string()][..]), "{file}");
        assert!(names.short_names.as_ref().is_some_and(|s| !s.is_empty()), "{file}");
        let v = &crd.spec.versions[0];
        assert_eq!(v.name, "v1alpha1");
        assert!(v.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some(), "{file} has no status subresource");
        assert!(v.additional_printer_columns.as_ref().is_some_and(|c| c.len() >= 3), "{file}");
    }
}
