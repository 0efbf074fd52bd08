//! `crdgen`: writes the CRD YAML generated from the `kiln-api` types.
//!
//! `crdgen` rewrites `crds/*.yaml`; `crdgen --check` exits non-zero when a checked-in file differs
//! from what the types generate (the drift check the test suite also runs).
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let check = std::env::args().any(|a| a == "--check");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut drifted = Vec::new();
    for (dir, (file, yaml)) in kiln_crdgen::targets(&root)
        .into_iter()
        .flat_map(|d| kiln_crdgen::render_all().into_iter().map(move |f| (d.clone(), f)))
    {
        let yaml = match yaml {
            Ok(y) => y,
            Err(e) => {
                eprintln!("crdgen: cannot render {file}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let path: PathBuf = dir.join(file);
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current == yaml {
            continue;
        }
        if check {
            drifted.push(path);
        } else if let Err(e) = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, &yaml)) {
            eprintln!("crdgen: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        } else {
            println!("wrote {}", path.display());
        }
    }
    if drifted.is_empty() {
        ExitCode::SUCCESS
    } else {
        for p in drifted {
            eprintln!("crdgen: {} is out of date; run `cargo run -p kiln-crdgen`", p.display());
        }
        ExitCode::FAILURE
    }
}
