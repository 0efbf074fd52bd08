//! Validates kiln manifests the way kube-apiserver admits them, without a cluster.
//!
//! For a `kiln.dev/v1alpha1` object this runs, in the apiserver's order:
//!
//! 1. **Strict field validation** (`fieldValidation=Strict`, kubectl's default): fields the schema
//!    does not declare are `unknown field "spec.foo"` errors. They are reported together with the
//!    validation errors of the rest of the object (the apiserver stops at them; a linter should
//!    not).
//! 2. **Decoding**: undeclared fields are pruned, non-nullable `null`s without a default are
//!    dropped, `default`s are applied; with the status subresource, `status` is dropped on create
//!    and kept from the old object on update.
//! 3. **ObjectMeta**: metadata is an object, `metadata.name` is present (or `generateName`) and a
//!    DNS-1123 subdomain, and on update unchanged.
//! 4. **Structural OpenAPI v3 validation** with kube-openapi's messages: type, nullable,
//!    required, enum, pattern, format, min/max length, items, properties, minimum/maximum.
//! 5. **`x-kubernetes-list-type`**: set items unique, map items unique by key.
//! 6. **CEL** `x-kubernetes-validations` via kube-cel, including transition rules (`oldSelf`) on
//!    update — unless step 3–5 found a type, required, enum or size error, in which case the
//!    apiserver skips CEL and says so (`some validation rules were not checked ...`).
//!
//! On update, values that did not change are not re-validated (the apiserver's validation
//! ratcheting, GA in Kubernetes 1.33); transition rules always run.
//!
//! Errors are [`FieldError`]s that print exactly like the apiserver's field errors. The library
//! does no I/O: [`parse_documents`] and [`lint_yaml`] take the text of a file.
#![forbid(unsafe_code)]

mod cel;
mod cost;
mod error;
mod formats;
mod meta;
mod schema;
mod structural;
mod yaml;

use std::sync::LazyLock;

use serde_json::Value;

pub use cel::RuleInfo;
pub use cost::{PER_CRD_LIMIT, PER_RULE_LIMIT, RuleCost};
pub use error::{BadValue, ErrorType, FieldError};
pub use yaml::{Document, Finding, Problem, YamlError, parse_documents};

use error::Path;
use schema::Node;

/// A CRD that cannot be used for validation.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The CRD is not shaped like an `apiextensions.k8s.io/v1` CustomResourceDefinition.
    #[error("CRD {crd}: {message}")]
    Crd {
        /// The CRD's name.
        crd: String,
        /// What is wrong.
        message: String,
    },
    /// A schema node this validator cannot interpret.
    #[error("schema at {path}: {message}")]
    Schema {
        /// Where in the schema.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A CEL rule that does not compile.
    #[error("CEL rule at {path} ({rule}): {message}")]
    Cel {
        /// Where in the schema.
        path: String,
        /// The rule.
        rule: String,
        /// The compiler's message.
        message: String,
    },
}

/// One served version of one kind.
#[derive(Debug)]
struct KindSchema {
    group: String,
    version: String,
    kind: String,
    namespaced: bool,
    status_subresource: bool,
    root: Node,
}

impl KindSchema {
    fn api_version(&self) -> String {
        format!("{}/{}", self.group, self.version)
    }
}

/// A rule of a CRD, where it is declared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeclaredRule {
    /// The kind (`Release`, ...).
    pub kind: String,
    /// The schema node the rule is declared on, e.g. `spec.artifacts[*].image` (empty for the root).
    pub schema_path: String,
    /// The rule.
    pub rule: RuleInfo,
    /// Its estimated cost, as the apiserver computes it when the CRD is applied.
    pub cost: Result<RuleCost, String>,
}

/// How an object reaches admission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// POST of a new object: `status` is dropped (status subresource).
    Create,
    /// PUT/PATCH of the main resource: `status` is kept from the old object.
    Update,
    /// PUT/PATCH of the `status` subresource: only the new status is taken.
    StatusUpdate,
}

/// What to do with fields the schema does not declare: the request's `fieldValidation`
/// parameter. kubectl sends `Strict`; the apiserver's default (clients that send nothing, such
/// as kube-rs) is `Warn`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FieldValidation {
    /// Unknown fields are errors. (The apiserver then answers 400 with only those errors; kiln
    /// reports them together with the validation errors of the rest.)
    #[default]
    Strict,
    /// Unknown fields are pruned and reported as warnings (`unknown field "spec.foo"`).
    Warn,
    /// Unknown fields are pruned silently.
    Ignore,
}

/// An admitted object.
#[derive(Clone, Debug, PartialEq)]
pub struct Admitted {
    /// The object as the apiserver stores it: unknown fields pruned, defaults applied, status
    /// handled per the operation.
    pub object: Value,
    /// Warnings for the client (`Warning` headers), e.g. pruned unknown fields with
    /// [`FieldValidation::Warn`].
    pub warnings: Vec<String>,
}

/// The `some validation rules were not checked` error the apiserver adds when it skips CEL.
const CEL_SKIPPED: &str = "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation";

/// Validates objects of a set of CRDs. Build it once: every CEL rule is compiled here.
#[derive(Debug)]
pub struct Validator {
    kinds: Vec<KindSchema>,
}

impl Validator {
    /// A validator for the kiln CRDs (`kiln_api::crds()`).
    pub fn new() -> Result<Validator, SchemaError> {
        let mut crds = Vec::new();
        for (file, crd) in kiln_api::crds() {
            let json = serde_json::to_value(&crd)
                .map_err(|e| SchemaError::Crd { crd: file.to_string(), message: e.to_string() })?;
            crds.push(json);
        }
        Validator::from_crds(&crds)
    }

    /// A validator for CustomResourceDefinitions given as JSON (`apiextensions.k8s.io/v1`).
    pub fn from_crds(crds: &[Value]) -> Result<Validator, SchemaError> {
        let mut kinds = Vec::new();
        for crd in crds {
            let crd_name = crd.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("<unnamed>").to_string();
            let fail = |message: &str| SchemaError::Crd { crd: crd_name.clone(), message: message.to_string() };
            let group = crd.pointer("/spec/group").and_then(Value::as_str).ok_or_else(|| fail("no spec.group"))?;
            let kind =
                crd.pointer("/spec/names/kind").and_then(Value::as_str).ok_or_else(|| fail("no spec.names.kind"))?;
            let namespaced = crd.pointer("/spec/scope").and_then(Value::as_str) == Some("Namespaced");
            let versions =
                crd.pointer("/spec/versions").and_then(Value::as_array).ok_or_else(|| fail("no spec.versions"))?;
            for version in versions {
                if version.get("served").and_then(Value::as_bool) == Some(false) {
                    continue;
                }
                let name = version.get("name").and_then(Value::as_str).ok_or_else(|| fail("a version has no name"))?;
                let schema = version
                    .pointer("/schema/openAPIV3Schema")
                    .ok_or_else(|| fail("a version has no schema.openAPIV3Schema"))?;
                kinds.push(KindSchema {
                    group: group.to_string(),
                    version: name.to_string(),
                    kind: kind.to_string(),
                    namespaced,
                    status_subresource: version.pointer("/subresources/status").is_some(),
                    root: Node::parse(schema, "")?,
                });
            }
        }
        Ok(Validator { kinds })
    }

    /// `(apiVersion, kind)` of every kind this validator knows.
    pub fn kinds(&self) -> Vec<(String, String)> {
        self.kinds.iter().map(|k| (k.api_version(), k.kind.clone())).collect()
    }

    /// Whether `kind` in `api_version` is namespaced; `None` for an unknown kind.
    pub fn is_namespaced(&self, api_version: &str, kind: &str) -> Option<bool> {
        self.kinds.iter().find(|k| k.api_version() == api_version && k.kind == kind).map(|k| k.namespaced)
    }

    /// Every `x-kubernetes-validations` rule, where it is declared and what it costs.
    pub fn rules(&self) -> Vec<DeclaredRule> {
        let mut out = Vec::new();
        for k in &self.kinds {
            collect_rules(&k.kind, &k.root, 1, &mut out);
        }
        out
    }

    /// Admission of a new object (`kubectl create`, or `apply` of something that does not exist):
    /// `Ok` with the object as the apiserver would store it (defaults applied, status dropped), or
    /// every error found.
    pub fn validate_create(&self, obj: &Value) -> Result<Value, Vec<FieldError>> {
        self.strict(obj, None, Operation::Create)
    }

    /// Admission of a change to `old` (`kubectl apply`/`edit`/`patch` of the main resource): `Ok`
    /// with the new object as stored (defaults applied, status kept from `old`), or every error
    /// found, including transition rules (`oldSelf`).
    pub fn validate_update(&self, new: &Value, old: &Value) -> Result<Value, Vec<FieldError>> {
        self.strict(new, Some(old), Operation::Update)
    }

    /// Admission of a write to the `status` subresource: only `new`'s status is taken; the rest
    /// comes from `old`.
    pub fn validate_status_update(&self, new: &Value, old: &Value) -> Result<Value, Vec<FieldError>> {
        self.strict(new, Some(old), Operation::StatusUpdate)
    }

    fn strict(&self, new: &Value, old: Option<&Value>, op: Operation) -> Result<Value, Vec<FieldError>> {
        self.admit(op, new, old, FieldValidation::Strict).map(|a| a.object)
    }

    /// Validates every document of a YAML file as a create, and returns what is wrong with each,
    /// with the line the document starts on.
    pub fn lint_yaml(&self, text: &str) -> Vec<Finding> {
        let mut out = Vec::new();
        for doc in parse_documents(text) {
            match doc {
                Err(e) => out.push(Finding { index: e.index, line: e.line, object: None, problem: Problem::Yaml(e) }),
                Ok(doc) => {
                    if let Err(errs) = self.validate_create(&doc.value) {
                        let object = yaml::object_label(&doc.value);
                        for e in errs {
                            out.push(Finding {
                                index: doc.index,
                                line: doc.line,
                                object: object.clone(),
                                problem: Problem::Field(e),
                            });
                        }
                    }
                }
            }
        }
        out
    }

    fn lookup(&self, obj: &Value) -> Result<&KindSchema, Vec<FieldError>> {
        if !obj.is_object() {
            let actual = structural::json_type(obj);
            return Err(vec![FieldError::new(
                ErrorType::TypeInvalid,
                "<nil>",
                BadValue::Value(Value::from(actual)),
                format!(
                    "a manifest must be an object (a YAML mapping) with apiVersion, kind and metadata, not {actual}"
                ),
            )]);
        }
        let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
        let mut errs = Vec::new();
        if api_version.is_empty() {
            errs.push(FieldError::required("apiVersion", ""));
        }
        if kind.is_empty() {
            errs.push(FieldError::required("kind", ""));
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        if let Some(k) = self.kinds.iter().find(|k| k.api_version() == api_version && k.kind == kind) {
            return Ok(k);
        }
        let mut known: Vec<String> = self.kinds.iter().map(|k| format!("{}/{}", k.api_version(), k.kind)).collect();
        known.sort();
        Err(vec![FieldError::new(
            ErrorType::NotSupported,
            "kind",
            BadValue::Value(Value::from(kind)),
            format!("no matches for kind {kind:?} in version {api_version:?}; known kinds: {}", known.join(", ")),
        )])
    }

    /// The general form of admission, for an API server: `old` is required for updates, and
    /// `field_validation` is the request's `fieldValidation`.
    pub fn admit(
        &self,
        op: Operation,
        new: &Value,
        old: Option<&Value>,
        field_validation: FieldValidation,
    ) -> Result<Admitted, Vec<FieldError>> {
        if op != Operation::Create && old.is_none() {
            return Err(vec![FieldError::internal("<nil>", "an update needs the old object")]);
        }
        let k = self.lookup(new)?;
        if let Some(old) = old {
            let old_k = self.lookup(old)?;
            if !std::ptr::eq(old_k, k) {
                return Err(vec![FieldError::invalid(
                    "kind",
                    new.get("kind").cloned().unwrap_or(Value::Null),
                    format!("the old object is a {} {}, not a {}", old_k.api_version(), old_k.kind, k.kind),
                )]);
            }
        }
        let mut errs = Vec::new();

        // 1. Strict field validation of what the client sent.
        meta::unknown_fields(new, &mut errs);
        structural::unknown_fields(&k.root, new, &Path::root(), true, &mut errs);

        // 2. Decoding: prune, drop non-nullable nulls, default.
        let decode = |v: &Value| {
            let mut v = v.clone();
            structural::prune(&k.root, &mut v, true);
            if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.retain(|key, _| meta::is_object_meta_field(key));
            }
            structural::prune_nulls(&k.root, &mut v);
            structural::apply_defaults(&k.root, &mut v);
            v
        };
        let old_obj = old.map(decode);
        let mut obj = decode(new);
        if k.status_subresource {
            match (op, &old_obj) {
                (Operation::Create, _) | (Operation::Update, None) => {
                    remove_key(&mut obj, "status");
                }
                (Operation::Update, Some(o)) => {
                    remove_key(&mut obj, "status");
                    if let (Some(status), Some(map)) = (o.get("status"), obj.as_object_mut()) {
                        map.insert("status".to_string(), status.clone());
                    }
                }
                (Operation::StatusUpdate, Some(o)) => {
                    let status = obj.get("status").cloned();
                    obj = o.clone();
                    remove_key(&mut obj, "status");
                    if let (Some(status), Some(map)) = (status, obj.as_object_mut()) {
                        map.insert("status".to_string(), status);
                    }
                }
                (Operation::StatusUpdate, None) => {}
            }
        }

        // 3-5. ObjectMeta, the OpenAPI schema, list types.
        meta::validate(&obj, &mut errs);
        if let Some(o) = &old_obj {
            meta::validate_update(&obj, o, &mut errs);
        }
        structural::validate(&k.root, &obj, old_obj.as_ref(), &Path::root(), &mut errs);
        structural::list_types(&k.root, &obj, &Path::root(), &mut errs);

        // 6. CEL, unless the object does not have the shape the rules expect.
        if errs.iter().any(|e| e.kind.blocks_cel()) {
            errs.push(FieldError::invalid("<nil>", Value::Null, CEL_SKIPPED));
        } else {
            let cel_obj = with_generated_name(&obj);
            cel::validate(&k.root, &cel_obj, old_obj.as_ref(), &mut errs);
        }

        let mut warnings = Vec::new();
        match field_validation {
            FieldValidation::Strict => {}
            FieldValidation::Warn => {
                warnings = errs.iter().filter(|e| e.is_unknown_field()).map(ToString::to_string).collect();
                errs.retain(|e| !e.is_unknown_field());
            }
            FieldValidation::Ignore => errs.retain(|e| !e.is_unknown_field()),
        }
        if errs.is_empty() { Ok(Admitted { object: obj, warnings }) } else { Err(errs) }
    }
}

fn remove_key(v: &mut Value, key: &str) {
    if let Some(map) = v.as_object_mut() {
        map.remove(key);
    }
}

/// The apiserver generates a name from `generateName` before validation; rules that read
/// `self.metadata.name` see it. kiln uses a fixed suffix where the apiserver uses 5 random
/// characters.
fn with_generated_name(obj: &Value) -> Value {
    let mut out = obj.clone();
    let generated = obj
        .get("metadata")
        .filter(|m| m.get("name").and_then(Value::as_str).is_none_or(str::is_empty))
        .and_then(|m| m.get("generateName"))
        .and_then(Value::as_str)
        .map(|g| format!("{g}xxxxx"));
    if let (Some(name), Some(meta)) = (generated, out.get_mut("metadata").and_then(Value::as_object_mut)) {
        meta.insert("name".to_string(), Value::String(name));
    }
    out
}

fn collect_rules(kind: &str, node: &Node, cardinality: u64, out: &mut Vec<DeclaredRule>) {
    if let Some(c) = &node.cel {
        for rule in &c.rules {
            out.push(DeclaredRule {
                kind: kind.to_string(),
                schema_path: node.schema_path.clone(),
                rule: rule.clone(),
                cost: cost::estimate(&rule.rule, node, cardinality),
            });
        }
    }
    for child in node.properties.values() {
        collect_rules(kind, child, cardinality, out);
    }
    if let Some(items) = &node.items {
        let n = cost_bound(node);
        collect_rules(kind, items, cardinality.saturating_mul(n), out);
    }
    if let Some(additional) = &node.additional {
        let n = cost_bound(node);
        collect_rules(kind, additional, cardinality.saturating_mul(n), out);
    }
}

/// How many items or entries a list or map node can hold, as the apiserver bounds it.
fn cost_bound(node: &Node) -> u64 {
    node.max_items.or(node.max_properties).unwrap_or(3 * 1024 * 1024 / 3)
}

static KILN: LazyLock<Result<Validator, SchemaError>> = LazyLock::new(Validator::new);

/// The validator for the kiln CRDs, built on first use.
pub fn kiln() -> Result<&'static Validator, &'static SchemaError> {
    KILN.as_ref()
}

fn with_kiln<T>(f: impl FnOnce(&Validator) -> Result<T, Vec<FieldError>>) -> Result<T, Vec<FieldError>> {
    match kiln() {
        Ok(v) => f(v),
        Err(e) => Err(vec![FieldError::internal("<nil>", format!("the kiln CRD schemas cannot be used: {e}"))]),
    }
}

/// [`Validator::validate_create`] with the kiln CRDs.
pub fn validate_create(obj: &Value) -> Result<Value, Vec<FieldError>> {
    with_kiln(|v| v.validate_create(obj))
}

/// [`Validator::validate_update`] with the kiln CRDs.
pub fn validate_update(new: &Value, old: &Value) -> Result<Value, Vec<FieldError>> {
    with_kiln(|v| v.validate_update(new, old))
}

/// [`Validator::validate_status_update`] with the kiln CRDs.
pub fn validate_status_update(new: &Value, old: &Value) -> Result<Value, Vec<FieldError>> {
    with_kiln(|v| v.validate_status_update(new, old))
}

/// [`Validator::lint_yaml`] with the kiln CRDs.
pub fn lint_yaml(text: &str) -> Vec<Finding> {
    match kiln() {
        Ok(v) => v.lint_yaml(text),
        Err(e) => vec![Finding {
            index: 0,
            line: 1,
            object: None,
            problem: Problem::Field(FieldError::internal("<nil>", format!("the kiln CRD schemas cannot be used: {e}"))),
        }],
    }
}
