//! The Helm chart `charts/kiln` installed onto a control plane the way `helm install` does it:
//! the chart's CRDs first (waiting until they are served), then its templates rendered by the real
//! Helm engine, all server-side applied. The engine is the pinned helm-python-sdk in
//! `.venv-chart` (`scripts/chart-venv` installs it; `scripts/chart-test` runs it first).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::controlplane::apply_yaml;

static RENDERED: AtomicUsize = AtomicUsize::new(0);

/// The chart in `repo` rendered with `values` (YAML; empty for the defaults) into `namespace`,
/// as one multi-document YAML stream (no NOTES.txt).
pub fn render(repo: &Path, values: &str, namespace: &str) -> Result<String, String> {
    let python = repo.join(".venv-chart/bin/python");
    if !python.exists() {
        return Err(format!(
            "{} is missing: run scripts/chart-venv (it installs the chart's pinned Helm engine)",
            python.display()
        ));
    }
    let n = RENDERED.fetch_add(1, Ordering::Relaxed);
    let values_file = std::env::temp_dir().join(format!("kiln-chart-values-{}-{n}.yaml", std::process::id()));
    std::fs::write(&values_file, values).map_err(|e| format!("{}: {e}", values_file.display()))?;
    let out = std::process::Command::new(&python)
        .arg(repo.join("charts/kiln/tests/render.py"))
        .arg(&values_file)
        .args(["--namespace", namespace])
        .output();
    let _ = std::fs::remove_file(&values_file);
    let out = out.map_err(|e| format!("rendering the chart: {e}"))?;
    if !out.status.success() {
        return Err(format!("rendering the chart: {}", String::from_utf8_lossy(&out.stderr)));
    }
    String::from_utf8(out.stdout).map_err(|e| format!("the rendered chart: {e}"))
}

/// `helm install` of the chart in `repo` into `namespace` (which must exist) with `values`, the
/// CRDs taken from `crd_dir` (normally `charts/kiln/crds`; another directory plays a cluster whose
/// CRDs differ from the controller's types).
pub async fn install(
    client: &kube::Client,
    repo: &Path,
    crd_dir: &Path,
    values: &str,
    namespace: &str,
) -> Result<(), String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(crd_dir)
        .map_err(|e| format!("{}: {e}", crd_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let mut crds = String::new();
    for path in files {
        crds.push_str(&std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?);
        crds.push_str("\n---\n");
    }
    apply_yaml(client, &crds, "helm").await.map_err(|e| format!("the CRDs: {e}"))?;
    let manifests = render(repo, values, namespace)?;
    apply_yaml(client, &manifests, "helm").await.map_err(|e| format!("the chart: {e}"))
}
