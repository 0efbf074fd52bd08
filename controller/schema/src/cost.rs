//! Static cost of CEL rules, estimated the way kube-apiserver does when a CRD is created or
//! updated: cel-go's cost model (`checker/cost.go`) with the apiserver's size estimates (a
//! string without `maxLength` may be as long as a whole request, 3 MiB; a list without
//! `maxItems` as many items as fit in one). The apiserver refuses a CRD whose rule exceeds
//! [`PER_RULE_LIMIT`] or whose rules together exceed [`PER_CRD_LIMIT`].
//!
//! This is a re-implementation for the CEL that kiln's rules use (comparisons, logical operators,
//! `has`, `size`, `matches`, `startsWith`, `split`, indexing, list functions, the comprehension
//! macros). Calls it does not model cost 1 plus their arguments, as cel-go's default does.
//! kube-cel's own `estimate_rule_cost` is a coarser heuristic (it assumes strings of 1,000
//! characters), which misses exactly the rules the apiserver rejects.

use kube_cel::cel::Program;
use kube_cel::cel::common::ast::{EntryExpr, Expr, LiteralValue};

use crate::schema::Node;

/// `StaticEstimatedCostLimit`: the most one rule may cost.
pub const PER_RULE_LIMIT: u64 = 10_000_000;
/// `StaticEstimatedCRDCostLimit`: the most all rules of a CRD may cost together (each rule's cost
/// times how many times it can run for one object).
pub const PER_CRD_LIMIT: u64 = 100_000_000;
/// The apiserver's request size limit, the bound of every unbounded string, list or map.
const MAX_REQUEST_BYTES: u64 = 3 * 1024 * 1024;
const STRING_TRAVERSAL: f64 = 0.1;
const REGEX_LENGTH: f64 = 0.25;
// apiserver/pkg/cel: the longest JSON forms of these formats.
const MAX_DATETIME_SIZE: u64 = 32;
const MAX_DURATION_SIZE: u64 = 32;
const DATE_SIZE: u64 = 10;

/// The estimated cost of one rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleCost {
    /// The worst-case cost of one evaluation.
    pub cost: u64,
    /// How many times the rule can run for one object (the product of the bounds of the lists
    /// and maps above it).
    pub cardinality: u64,
    /// Strings the rule traverses that have no `maxLength` (and so count as 3 MiB), as schema
    /// paths. Empty when every traversed string is bounded.
    pub unbounded: Vec<String>,
}

/// What an expression is, as far as cost is concerned.
#[derive(Clone, Copy)]
enum Shape<'a> {
    /// A value described by a schema node.
    Node(&'a Node),
    /// A string, list or map of at most this many characters, items or entries (literals and
    /// computed values).
    Sized(u64),
    /// A scalar (size 1).
    Scalar,
    /// Not described by the schema (e.g. `metadata` at the root): strings are unbounded.
    Unknown,
}

struct Est<'a> {
    cost: u64,
    shape: Shape<'a>,
}

struct Scope<'a> {
    vars: Vec<(String, Shape<'a>)>,
    unbounded: Vec<String>,
}

fn ceil(x: u64, f: f64) -> u64 {
    let v = (x as f64 * f).ceil();
    if v >= u64::MAX as f64 { u64::MAX } else { v as u64 }
}

fn node_size(n: &Node) -> u64 {
    match n.ty.as_deref() {
        Some("string") => match (n.max_length, &n.enum_values, n.format.as_deref()) {
            (Some(m), _, _) => m,
            (None, Some(e), _) if !e.is_empty() => {
                e.iter().filter_map(|v| v.as_str()).map(|s| s.chars().count() as u64).max().unwrap_or(0)
            }
            (None, _, Some("date-time")) => MAX_DATETIME_SIZE,
            (None, _, Some("duration")) => MAX_DURATION_SIZE,
            (None, _, Some("date")) => DATE_SIZE,
            _ => MAX_REQUEST_BYTES - 2,
        },
        Some("array") => n.max_items.unwrap_or_else(|| (MAX_REQUEST_BYTES - 2) / (min_size(n.items.as_deref()) + 1)),
        Some("object") if n.additional.is_some() => {
            n.max_properties.unwrap_or_else(|| (MAX_REQUEST_BYTES - 2) / (min_size(n.additional.as_deref()) + 4))
        }
        Some("object") => n.properties.len() as u64,
        None if n.int_or_string => MAX_REQUEST_BYTES - 2,
        _ => 1,
    }
}

/// The smallest JSON a value of this schema serializes to.
fn min_size(n: Option<&Node>) -> u64 {
    match n.and_then(|n| n.ty.as_deref()) {
        Some("string") | Some("object") | Some("array") => 2,
        Some("boolean") => 4,
        _ => 1,
    }
}

fn is_unbounded_string(n: &Node) -> bool {
    n.ty.as_deref() == Some("string")
        && n.max_length.is_none()
        && n.enum_values.as_ref().is_none_or(|e| e.is_empty())
        && !matches!(n.format.as_deref(), Some("date-time" | "duration" | "date"))
}

impl<'a> Shape<'a> {
    fn size(&self) -> u64 {
        match self {
            Shape::Node(n) => node_size(n),
            Shape::Sized(s) => *s,
            Shape::Scalar => 1,
            Shape::Unknown => MAX_REQUEST_BYTES - 2,
        }
    }

    fn select(&self, field: &str) -> Shape<'a> {
        match self {
            Shape::Node(n) => match n.child(field) {
                Some(c) => Shape::Node(c),
                None => Shape::Unknown,
            },
            _ => Shape::Unknown,
        }
    }

    fn element(&self) -> Shape<'a> {
        match self {
            Shape::Node(n) => match (&n.items, &n.additional) {
                (Some(i), _) => Shape::Node(i),
                // Iterating a map yields its keys: strings of unknown length.
                (None, Some(_)) => Shape::Unknown,
                _ => Shape::Unknown,
            },
            _ => Shape::Unknown,
        }
    }
}

/// Estimates `rule` declared on `node`. `Err` when it does not parse.
pub(crate) fn estimate(rule: &str, node: &Node, cardinality: u64) -> Result<RuleCost, String> {
    let program = Program::compile(rule).map_err(|e| e.to_string())?;
    let mut scope = Scope {
        vars: vec![("self".to_string(), Shape::Node(node)), ("oldSelf".to_string(), Shape::Node(node))],
        unbounded: Vec::new(),
    };
    let est = cost_of(&program.expression().expr, &mut scope);
    scope.unbounded.sort();
    scope.unbounded.dedup();
    Ok(RuleCost { cost: est.cost, cardinality, unbounded: scope.unbounded })
}

fn note_traversal(shape: &Shape<'_>, scope: &mut Scope<'_>) {
    match shape {
        Shape::Node(n) if is_unbounded_string(n) => scope.unbounded.push(n.schema_path.clone()),
        Shape::Unknown => scope.unbounded.push("<not in the schema>".to_string()),
        _ => {}
    }
}

fn cost_of<'a>(expr: &Expr, scope: &mut Scope<'a>) -> Est<'a> {
    match expr {
        Expr::Literal(lit) => {
            let shape = match lit {
                LiteralValue::String(s) => Shape::Sized(s.chars().count() as u64),
                LiteralValue::Bytes(_) => Shape::Unknown,
                _ => Shape::Scalar,
            };
            Est { cost: 0, shape }
        }
        Expr::Ident(name) => {
            let shape = scope.vars.iter().rev().find(|(n, _)| n == name).map(|(_, s)| *s).unwrap_or(Shape::Scalar);
            Est { cost: 1, shape }
        }
        Expr::Select(sel) => {
            let operand = cost_of(&sel.operand.expr, scope);
            if sel.test {
                // has(): the presence test costs 1 plus its operand.
                Est { cost: operand.cost.saturating_add(1), shape: Shape::Scalar }
            } else {
                Est { cost: operand.cost.saturating_add(1), shape: operand.shape.select(&sel.field) }
            }
        }
        Expr::List(list) => {
            let mut cost: u64 = 10;
            for e in &list.elements {
                cost = cost.saturating_add(cost_of(&e.expr, scope).cost);
            }
            Est { cost, shape: Shape::Sized(list.elements.len() as u64) }
        }
        Expr::Map(map) => {
            let mut cost: u64 = 30;
            for entry in &map.entries {
                if let EntryExpr::MapEntry(e) = &entry.expr {
                    cost = cost.saturating_add(cost_of(&e.key.expr, scope).cost);
                    cost = cost.saturating_add(cost_of(&e.value.expr, scope).cost);
                }
            }
            Est { cost, shape: Shape::Sized(map.entries.len() as u64) }
        }
        Expr::Comprehension(comp) => {
            let range = cost_of(&comp.iter_range.expr, scope);
            let init = cost_of(&comp.accu_init.expr, scope);
            scope.vars.push((comp.accu_var.clone(), Shape::Scalar));
            scope.vars.push((comp.iter_var.clone(), range.shape.element()));
            let cond = cost_of(&comp.loop_cond.expr, scope);
            let step = cost_of(&comp.loop_step.expr, scope);
            scope.vars.pop();
            let result = cost_of(&comp.result.expr, scope);
            scope.vars.pop();
            let per_item = cond.cost.saturating_add(step.cost);
            let cost = range
                .cost
                .saturating_add(init.cost)
                .saturating_add(result.cost)
                .saturating_add(range.shape.size().saturating_mul(per_item));
            Est { cost, shape: Shape::Scalar }
        }
        Expr::Call(call) => {
            let target = call.target.as_ref().map(|t| cost_of(&t.expr, scope));
            let args: Vec<Est<'a>> = call.args.iter().map(|a| cost_of(&a.expr, scope)).collect();
            let arg_sum = args.iter().fold(0u64, |acc, a| acc.saturating_add(a.cost));
            let target_cost = target.as_ref().map_or(0, |t| t.cost);
            let base = arg_sum.saturating_add(target_cost);
            let arg = |i: usize| args.get(i).map(|a| a.shape).unwrap_or(Shape::Unknown);
            match call.func_name.as_str() {
                "_&&_" | "_||_" => Est { cost: base, shape: Shape::Scalar },
                "_?_:_" => {
                    let c = args.first().map_or(0, |a| a.cost);
                    let t = args.get(1).map_or(0, |a| a.cost);
                    let f = args.get(2).map_or(0, |a| a.cost);
                    let size = arg(1).size().max(arg(2).size());
                    Est { cost: c.saturating_add(t.max(f)), shape: Shape::Sized(size) }
                }
                "_==_" | "_!=_" | "_<_" | "_<=_" | "_>_" | "_>=_" => {
                    let smallest = arg(0).size().min(arg(1).size());
                    let is_ordering = !matches!(call.func_name.as_str(), "_==_" | "_!=_");
                    let both_scalar = matches!(arg(0), Shape::Scalar) || matches!(arg(1), Shape::Scalar);
                    let own = if is_ordering && both_scalar { 1 } else { ceil(smallest, STRING_TRAVERSAL) };
                    Est { cost: base.saturating_add(own), shape: Shape::Scalar }
                }
                "@in" => Est { cost: base.saturating_add(arg(1).size()), shape: Shape::Scalar },
                "matches" if target.is_some() => {
                    let t = target.as_ref().map(|t| t.shape).unwrap_or(Shape::Unknown);
                    note_traversal(&t, scope);
                    let str_cost = ceil(t.size().saturating_add(1), STRING_TRAVERSAL);
                    let regex_cost = ceil(arg(0).size(), REGEX_LENGTH);
                    Est { cost: base.saturating_add(str_cost.saturating_mul(regex_cost)), shape: Shape::Scalar }
                }
                "startsWith" | "endsWith" => {
                    Est { cost: base.saturating_add(ceil(arg(0).size(), STRING_TRAVERSAL)), shape: Shape::Scalar }
                }
                "contains" if target.is_some() => {
                    let t = target.as_ref().map(|t| t.shape).unwrap_or(Shape::Unknown);
                    note_traversal(&t, scope);
                    let own = ceil(t.size(), STRING_TRAVERSAL).saturating_mul(ceil(arg(0).size(), STRING_TRAVERSAL));
                    Est { cost: base.saturating_add(own), shape: Shape::Scalar }
                }
                "split" | "lowerAscii" | "upperAscii" | "trim" | "replace" | "find" | "findAll" => {
                    let t = target.as_ref().map(|t| t.shape).unwrap_or(Shape::Unknown);
                    note_traversal(&t, scope);
                    let size = t.size();
                    Est {
                        cost: base.saturating_add(ceil(size, STRING_TRAVERSAL)).saturating_add(1),
                        shape: Shape::Sized(size),
                    }
                }
                "_[_]" => {
                    let container = arg(0);
                    Est { cost: base.saturating_add(1), shape: container.element() }
                }
                "isSorted" | "sum" | "min" | "max" | "indexOf" | "lastIndexOf" | "slice" | "distinct" | "reverse" => {
                    let t = target.as_ref().map(|t| t.shape).unwrap_or(Shape::Unknown);
                    let size = t.size();
                    let shape = if call.func_name == "slice" { t } else { Shape::Scalar };
                    Est { cost: base.saturating_add(size).saturating_add(1), shape }
                }
                "_+_" => {
                    let size = arg(0).size().saturating_add(arg(1).size());
                    let is_string = matches!(arg(0), Shape::Node(n) if n.ty.as_deref() == Some("string"));
                    let own = if is_string { ceil(size, STRING_TRAVERSAL) } else { 1 };
                    let shape = if matches!(arg(0), Shape::Scalar) { Shape::Scalar } else { Shape::Sized(size) };
                    Est { cost: base.saturating_add(own), shape }
                }
                "size" => Est { cost: base.saturating_add(1), shape: Shape::Scalar },
                _ => Est { cost: base.saturating_add(1), shape: Shape::Scalar },
            }
        }
        _ => Est { cost: 0, shape: Shape::Unknown },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(v: serde_json::Value) -> Node {
        Node::parse(&v, "t").expect("schema parses")
    }

    #[test]
    fn unbounded_strings_in_a_list_exceed_the_per_rule_limit() {
        let n = node(json!({"type": "array", "maxItems": 8, "items": {"type": "string"}}));
        let c = estimate("self.all(e, e.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') && e.size() <= 63)", &n, 1)
            .expect("parses");
        assert!(c.cost > PER_RULE_LIMIT, "{}", c.cost);
        assert_eq!(c.unbounded, vec!["t[*]".to_string()]);

        let bounded = node(json!({"type": "array", "maxItems": 8, "items": {"type": "string", "maxLength": 63}}));
        let c = estimate("self.all(e, e.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') && e.size() <= 63)", &bounded, 1)
            .expect("parses");
        assert!(c.cost < 10_000, "{}", c.cost);
        assert!(c.unbounded.is_empty());
    }
}
