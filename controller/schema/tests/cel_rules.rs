//! Every CEL rule of every kiln CRD compiles with kube-cel, its regular expressions compile, it
//! only uses the variables CRD rules may use, and its estimated cost fits kube-apiserver's budget
//! (the apiserver refuses to create a CRD whose rules do not).

use kiln_schema::{PER_CRD_LIMIT, PER_RULE_LIMIT, Validator};
use kube_cel::cel::Program;
use kube_cel::cel::common::ast::{Expr, LiteralValue};
use kube_cel::{ScopeContext, WarningKind, analyze_rule, compile_schema};
use serde_json::Value;

/// Rules allowed to exceed the apiserver's per-rule cost limit: none. (A list of strings without
/// `maxLength` makes every string count as 3 MiB and one `matches()` on it ~2.5M, and a real
/// kube-apiserver refuses such a CRD; bound list items with `inner(length(max = ..))`.)
const KNOWN_OVER_BUDGET: &[(&str, &str)] = &[];

/// Rules that may traverse a string without `maxLength`, and why that is acceptable.
const JUSTIFIED_UNBOUNDED: &[(&str, &str, &str)] = &[(
    "Environment",
    "",
    "self.metadata.name: the apiserver gives root metadata.name no maxLength in CEL; one matches() on it \
     costs ~2.5M, within the 10M per-rule limit",
)];

/// Functions and macros of Kubernetes' CEL base environment at 1.33, the oldest version kiln
/// supports (k8s.io/apiserver/pkg/cel/environment/base.go): the CEL standard library, ext.Strings
/// v2, ext.Sets, two-variable comprehensions, optional types, and the Kubernetes libraries (lists,
/// regex, URLs, quantity, IP/CIDR, format, semver, authz). kube-cel also implements cel-go's
/// ext.Lists (`slice`, `flatten`, `distinct`, `sort`, `lists.range`, ...), which the apiserver only
/// offers from 1.34 — and a 1.34 apiserver still compiles new rules at its 1.33 compatibility
/// version — so a rule using them passes kube-cel but is refused by the apiserver.
const CEL_AT_1_33: &[&str] = &[
    // standard library and macros
    "has",
    "all",
    "exists",
    "exists_one",
    "map",
    "filter",
    "size",
    "matches",
    "startsWith",
    "endsWith",
    "contains",
    "duration",
    "timestamp",
    "int",
    "uint",
    "double",
    "string",
    "bytes",
    "bool",
    "dyn",
    "type",
    "getFullYear",
    "getMonth",
    "getDate",
    "getDayOfMonth",
    "getDayOfWeek",
    "getDayOfYear",
    "getHours",
    "getMinutes",
    "getSeconds",
    "getMilliseconds",
    // ext.Strings v2
    "charAt",
    "indexOf",
    "lastIndexOf",
    "lowerAscii",
    "upperAscii",
    "replace",
    "split",
    "join",
    "substring",
    "trim",
    "strings.quote",
    // Kubernetes lists, regex, URLs, quantity, IP/CIDR, format, semver; ext.Sets; 2-var comprehensions
    "isSorted",
    "sum",
    "min",
    "max",
    "find",
    "findAll",
    "url",
    "isURL",
    "getScheme",
    "getHost",
    "getHostname",
    "getPort",
    "getEscapedPath",
    "getQuery",
    "quantity",
    "isQuantity",
    "ip",
    "isIP",
    "cidr",
    "isCIDR",
    "sets.contains",
    "sets.equivalent",
    "sets.intersects",
    "semver",
    "isSemver",
    "transformList",
    "transformMap",
    "transformMapEntry",
    "existsOne",
    "optional.of",
    "optional.none",
    "optional.ofNonZeroValue",
    "hasValue",
    "value",
    "orValue",
    "or",
];

/// Rules allowed to use a function the 1.33 apiserver does not have (see CEL_AT_1_33): none.
/// (`slice()`, for example, only arrived in 1.34; append-only approvals are written out per index.)
const KNOWN_NOT_AT_1_33: &[(&str, &str, &str)] = &[];

/// Every function a rule calls (operators excluded).
fn functions(expr: &Expr, out: &mut Vec<String>) {
    match expr {
        Expr::Call(call) => {
            let name = &call.func_name;
            let is_operator =
                name.starts_with('_') || name.starts_with('@') || name.starts_with('!') || name.starts_with('-');
            if !is_operator {
                out.push(name.clone());
            }
            call.target.iter().for_each(|t| functions(&t.expr, out));
            call.args.iter().for_each(|a| functions(&a.expr, out));
        }
        Expr::Comprehension(c) => {
            for e in [&c.iter_range, &c.accu_init, &c.loop_cond, &c.loop_step, &c.result] {
                functions(&e.expr, out);
            }
        }
        Expr::Select(s) => functions(&s.operand.expr, out),
        Expr::List(l) => l.elements.iter().for_each(|e| functions(&e.expr, out)),
        _ => {}
    }
}

fn validator() -> Validator {
    Validator::new().unwrap_or_else(|e| panic!("the kiln CRDs do not load: {e}"))
}

/// `(kind, schema node JSON)` for every node with `x-kubernetes-validations`.
fn rule_nodes() -> Vec<(String, String, Value)> {
    fn walk(kind: &str, path: &str, node: &Value, out: &mut Vec<(String, String, Value)>) {
        if node.get("x-kubernetes-validations").is_some() {
            out.push((kind.to_string(), path.to_string(), node.clone()));
        }
        if let Some(props) = node.get("properties").and_then(Value::as_object) {
            for (name, child) in props {
                let p = if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
                walk(kind, &p, child, out);
            }
        }
        for key in ["items", "additionalProperties"] {
            if let Some(child) = node.get(key).filter(|c| c.is_object()) {
                walk(kind, &format!("{path}[*]"), child, out);
            }
        }
    }
    let mut out = Vec::new();
    for (file, crd) in kiln_api::crds() {
        let crd = serde_json::to_value(&crd).unwrap_or_else(|e| panic!("{file}: {e}"));
        let kind = crd["spec"]["names"]["kind"].as_str().unwrap_or_else(|| panic!("{file}: no kind")).to_string();
        let versions = crd["spec"]["versions"].as_array().unwrap_or_else(|| panic!("{file}: no versions"));
        for v in versions {
            walk(&kind, "", &v["schema"]["openAPIV3Schema"], &mut out);
        }
    }
    out
}

/// Variables a rule binds itself (comprehension iteration and accumulator variables).
fn bound_variables(expr: &Expr, out: &mut Vec<String>) {
    match expr {
        Expr::Comprehension(c) => {
            out.push(c.iter_var.clone());
            out.push(c.accu_var.clone());
            for e in [&c.iter_range, &c.accu_init, &c.loop_cond, &c.loop_step, &c.result] {
                bound_variables(&e.expr, out);
            }
        }
        Expr::Call(call) => {
            call.target.iter().for_each(|t| bound_variables(&t.expr, out));
            call.args.iter().for_each(|a| bound_variables(&a.expr, out));
        }
        Expr::Select(s) => bound_variables(&s.operand.expr, out),
        Expr::List(l) => l.elements.iter().for_each(|e| bound_variables(&e.expr, out)),
        _ => {}
    }
}

fn regex_literals(expr: &Expr, out: &mut Vec<String>) {
    match expr {
        Expr::Call(call) => {
            if let (true, Some(Expr::Literal(LiteralValue::String(s)))) =
                (call.func_name == "matches", call.args.first().map(|a| &a.expr))
            {
                out.push(s.to_string());
            }
            if let Some(t) = &call.target {
                regex_literals(&t.expr, out);
            }
            for a in &call.args {
                regex_literals(&a.expr, out);
            }
        }
        Expr::Comprehension(c) => {
            for e in [&c.iter_range, &c.accu_init, &c.loop_cond, &c.loop_step, &c.result] {
                regex_literals(&e.expr, out);
            }
        }
        Expr::Select(s) => regex_literals(&s.operand.expr, out),
        Expr::List(l) => l.elements.iter().for_each(|e| regex_literals(&e.expr, out)),
        _ => {}
    }
}

#[test]
fn every_rule_compiles_with_kube_cel() {
    let nodes = rule_nodes();
    let mut count = 0;
    let mut problems = Vec::new();
    for (kind, path, node) in &nodes {
        let compiled = compile_schema(node);
        for err in compiled.compilation_errors() {
            problems.push(format!("{kind} {path}: {err}"));
        }
        for rule in node["x-kubernetes-validations"].as_array().into_iter().flatten() {
            count += 1;
            let text = rule["rule"].as_str().unwrap_or_else(|| panic!("{kind} {path}: a rule without `rule`"));
            let program = match Program::compile(text) {
                Ok(p) => p,
                Err(e) => {
                    problems.push(format!("{kind} {path}: {text}: {e}"));
                    continue;
                }
            };
            let mut regexes = Vec::new();
            regex_literals(&program.expression().expr, &mut regexes);
            for re in regexes {
                if let Err(e) = regex::Regex::new(&re) {
                    problems.push(format!("{kind} {path}: regex {re:?} in {text}: {e}"));
                }
            }
            let mut bound = Vec::new();
            bound_variables(&program.expression().expr, &mut bound);
            for w in analyze_rule(text, &compiled, ScopeContext::CrdValidation) {
                // kube-cel's static analysis: wrong variables, and its own (coarse) cost heuristic.
                // kube-cel 0.8 reports a comprehension's own variable (`e` in `self.all(e, ...)`)
                // as out of scope; those are not findings.
                if w.kind == WarningKind::WrongScope
                    && bound.iter().any(|b| w.message.contains(&format!("variable '{b}'")))
                {
                    continue;
                }
                match w.kind {
                    WarningKind::WrongScope | WarningKind::CostExceeded | WarningKind::MissingBounds => {
                        problems.push(format!("{kind} {path}: {text}: {:?}: {}", w.kind, w.message))
                    }
                    _ => problems.push(format!("{kind} {path}: {text}: {}", w.message)),
                }
            }
            if rule.get("messageExpression").is_some() {
                problems.push(format!("{kind} {path}: messageExpression is not covered by these tests"));
            }
        }
    }
    assert!(count >= 60, "only {count} rules found: did the CRDs lose their validations?");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The validator compiles the same rules.
    assert_eq!(validator().rules().len(), count);
}

#[test]
fn every_rule_uses_only_what_kubernetes_1_33_offers() {
    let mut problems = Vec::new();
    let mut seen_known = Vec::new();
    for r in validator().rules() {
        let program = Program::compile(&r.rule.rule).unwrap_or_else(|e| panic!("{}: {e}", r.rule.rule));
        let mut called = Vec::new();
        functions(&program.expression().expr, &mut called);
        for f in called {
            if CEL_AT_1_33.contains(&f.as_str()) {
                continue;
            }
            let key = (r.kind.as_str(), r.schema_path.as_str(), f.as_str());
            if KNOWN_NOT_AT_1_33.contains(&key) {
                seen_known.push(format!("{key:?}"));
            } else {
                problems.push(format!(
                    "{} {}: `{f}` is not in the Kubernetes 1.33 CEL environment: {}",
                    r.kind, r.schema_path, r.rule.rule
                ));
            }
        }
    }
    for known in KNOWN_NOT_AT_1_33 {
        if !seen_known.contains(&format!("{known:?}")) {
            problems.push(format!("{known:?} no longer occurs: remove it from KNOWN_NOT_AT_1_33"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_rule_fits_the_apiserver_cost_budget() {
    let v = validator();
    let mut problems = Vec::new();
    let mut per_kind: std::collections::BTreeMap<String, u64> = Default::default();
    let mut still_over = Vec::new();
    for r in v.rules() {
        let cost = r.cost.as_ref().unwrap_or_else(|e| panic!("{} {}: {e}", r.kind, r.schema_path));
        let total = per_kind.entry(r.kind.clone()).or_default();
        *total = total.saturating_add(cost.cost.saturating_mul(cost.cardinality));
        let known = KNOWN_OVER_BUDGET.contains(&(r.kind.as_str(), r.schema_path.as_str()));
        if cost.cost > PER_RULE_LIMIT {
            if known {
                still_over.push((r.kind.clone(), r.schema_path.clone()));
            } else {
                problems.push(format!(
                    "{} {}: estimated cost {} exceeds the apiserver's per-rule limit {PER_RULE_LIMIT}: {}",
                    r.kind, r.schema_path, cost.cost, r.rule.rule
                ));
            }
        }
        if !cost.unbounded.is_empty() {
            let justified = JUSTIFIED_UNBOUNDED.iter().any(|(k, p, _)| *k == r.kind && *p == r.schema_path);
            if !known && !justified {
                problems.push(format!(
                    "{} {}: traverses strings without maxLength ({:?}): {}",
                    r.kind, r.schema_path, cost.unbounded, r.rule.rule
                ));
            }
        }
    }
    for (kind, path) in KNOWN_OVER_BUDGET {
        if !still_over.iter().any(|(k, p)| k == kind && p == path) {
            problems.push(format!("{kind} {path} is within budget now: remove it from KNOWN_OVER_BUDGET"));
        }
    }
    for (kind, total) in &per_kind {
        if *total > PER_CRD_LIMIT {
            problems.push(format!("{kind}: rules together cost {total}, over the per-CRD limit {PER_CRD_LIMIT}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn transition_rules_are_the_immutability_rules() {
    // Transition rules run only on update; a rule that mentions oldSelf by accident would silently
    // stop guarding creates. Pin the set.
    let mut transition: Vec<String> = validator()
        .rules()
        .into_iter()
        .filter(|r| r.rule.transition)
        .map(|r| format!("{} {}", r.kind, r.rule.rule))
        .collect();
    transition.sort();
    assert_eq!(transition.len(), 16, "{transition:#?}");
    assert!(transition.iter().all(|r| r.contains("oldSelf")));
}
