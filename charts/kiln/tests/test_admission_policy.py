"""The identity-bound approvals policy: its shape, and its CEL evaluated against admission
requests from distinct users.

The expressions are evaluated with cel-python (a CEL implementation, not Kubernetes'), with the
two Kubernetes CEL library functions the policy uses (`lowerAscii`, `join` from the strings
extension) added, and the policy's variables evaluated in order as the API server would. This
proves the policy's logic; that a real API server compiles and applies it is the API test
server's and a real cluster's part (docs/install.md says which is which).
"""

from __future__ import annotations

import copy
import re
from typing import Any

import celpy
import yaml
from celpy import celtypes

from kilntest import CHART, only, objects, test
from test_chart import NON_DEFAULT

SA = "system:serviceaccount:kiln-system:kiln"
ARGO = "system:serviceaccount:argocd:argocd-application-controller"
USERS = {
    "alice": ["kiln:security", "system:authenticated"],
    "bob": ["kiln:product", "system:authenticated"],
    "carol": ["system:authenticated"],
    "dana": ["kiln:release-engineering", "system:authenticated"],
    "erin": ["oidc:sec-team", "system:authenticated"],
    SA: ["system:serviceaccounts", "system:serviceaccounts:kiln-system", "system:authenticated"],
    ARGO: ["system:serviceaccounts", "system:serviceaccounts:argocd", "system:authenticated"],
}

# Functions and macros the policy may call: CEL's own, the Kubernetes strings extension and the
# admission `authorizer`'s builder, all available in Kubernetes 1.33 (no list slice(), no
# two-variable comprehensions).
K8S_133_FUNCTIONS = {
    "has", "size", "filter", "map", "all", "exists", "lowerAscii", "join",
    "group", "resource", "namespace", "check", "allowed",
}

# Who holds which verbs on promotions.kiln.dev in namespace "ingest", as RBAC would answer the
# policy's authorizer (the chart's kiln-rollbacker role grants `rollback`).
VERBS = {
    "alice": {"create", "patch"},
    "dana": {"create", "rollback"},
    "oncall": {"create", "rollback"},
}

_ENV = celpy.Environment()


def _lower_ascii(s: celtypes.StringType) -> celtypes.StringType:
    return celtypes.StringType("".join(c.lower() if c.isascii() else c for c in s))


def _join(items: celtypes.ListType, sep: celtypes.StringType = celtypes.StringType("")) -> celtypes.StringType:
    return celtypes.StringType(str(sep).join(str(i) for i in items))


def _with(key: str):
    def step(check: celtypes.MapType, value: celtypes.StringType) -> celtypes.MapType:
        return celtypes.MapType({**check, celtypes.StringType(key): value})
    return step


def _allowed(check: celtypes.MapType) -> celtypes.BoolType:
    """The authorizer's decision for the built check (group, resource, namespace, verb) and user."""
    get = lambda k: str(check.get(celtypes.StringType(k), ""))  # noqa: E731
    ok = (get("group"), get("resource"), get("namespace")) == ("kiln.dev", "promotions", "ingest") and \
        get("verb") in VERBS.get(get("user"), set())
    return celtypes.BoolType(ok)


FUNCTIONS = {
    "lowerAscii": _lower_ascii, "join": _join,
    "group": _with("group"), "resource": _with("resource"), "namespace": _with("namespace"),
    "check": _with("verb"), "allowed": _allowed,
}


def evaluate(expr: str, activation: dict[str, Any]) -> Any:
    program = _ENV.program(_ENV.compile(expr), functions=FUNCTIONS)
    result = program.evaluate(activation)
    if isinstance(result, celpy.CELEvalError):
        raise AssertionError(f"CEL error in {expr!r}: {result}")
    return result


class Policy:
    def __init__(self, values: dict[str, Any] | None = None):
        objs = objects(values)
        self.policy = only(objs, "ValidatingAdmissionPolicy")
        self.binding = only(objs, "ValidatingAdmissionPolicyBinding")

    def expressions(self) -> list[str]:
        spec = self.policy["spec"]
        out = [v["expression"] for v in spec["variables"]]
        for v in spec["validations"]:
            out.append(v["expression"])
            if "messageExpression" in v:
                out.append(v["messageExpression"])
        return out

    def admit(self, user: str, operation: str, obj: dict[str, Any], old: dict[str, Any] | None = None,
              groups: list[str] | None = None) -> list[str]:
        """The denial messages for this request (empty: admitted)."""
        rules = self.policy["spec"]["matchConstraints"]["resourceRules"]
        assert any(operation in r["operations"] and "promotions" in r["resources"] for r in rules)
        user_info: dict[str, Any] = {"username": user}
        g = USERS.get(user, []) if groups is None else groups
        if g:
            user_info["groups"] = g
        request = {"operation": operation, "userInfo": user_info, "resource": {"group": "kiln.dev",
                   "version": "v1alpha1", "resource": "promotions"}, "namespace": "ingest"}
        activation: dict[str, Any] = {
            "authorizer": celtypes.MapType({celtypes.StringType("user"): celtypes.StringType(user)}),
            "request": celpy.json_to_cel(request),
            "object": celpy.json_to_cel(obj),
            "oldObject": celpy.json_to_cel(old) if old is not None else None,
        }
        variables: dict[str, Any] = {}
        for v in self.policy["spec"]["variables"]:
            activation["variables"] = celtypes.MapType(variables)
            variables[celtypes.StringType(v["name"])] = evaluate(v["expression"], activation)
        activation["variables"] = celtypes.MapType(variables)
        denied = []
        for v in self.policy["spec"]["validations"]:
            ok = evaluate(v["expression"], activation)
            assert isinstance(ok, celtypes.BoolType), (v["expression"], ok)
            if not ok:
                msg = evaluate(v["messageExpression"], activation) if "messageExpression" in v else v["message"]
                assert isinstance(msg, str) and msg, msg
                denied.append(str(msg))
        return denied


def promotion(approvals: list[dict[str, Any]] | None = None, requested_by: str | None = None,
              rollback: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"release": "ingest-worker-v1-4-2", "environment": "prod", "abort": False, "retry": 0}
    if rollback is not None:
        spec["rollback"] = rollback
    if approvals is not None:
        spec["approvals"] = approvals
    if requested_by is not None:
        spec["requestedBy"] = requested_by
    return {"apiVersion": "kiln.dev/v1alpha1", "kind": "Promotion",
            "metadata": {"name": "ingest-worker-v1-4-2-prod", "namespace": "ingest", "generation": 1}, "spec": spec}


def approval(user: str, role: str, comment: str | None = None) -> dict[str, Any]:
    a = {"user": user, "role": role, "at": "2025-10-28T14:05:00Z"}
    if comment:
        a["comment"] = comment
    return a


def appended(old: dict[str, Any], *new: dict[str, Any]) -> dict[str, Any]:
    obj = copy.deepcopy(old)
    obj["spec"].setdefault("approvals", []).extend(new)
    return obj


DEFAULT = None
CUSTOM = None


def policies() -> tuple[Policy, Policy]:
    global DEFAULT, CUSTOM
    if DEFAULT is None:
        DEFAULT, CUSTOM = Policy(), Policy(NON_DEFAULT)
    return DEFAULT, CUSTOM


def allowed(p: Policy, *a: Any, **kw: Any) -> None:
    denied = p.admit(*a, **kw)
    assert denied == [], denied


def refused(p: Policy, expect: str, *a: Any, **kw: Any) -> None:
    denied = p.admit(*a, **kw)
    assert denied, "admitted"
    assert any(expect in d for d in denied), denied


# ---- shape ----------------------------------------------------------------------------------

@test
def policy_matches_promotion_writes_and_fails_closed():
    p, custom = policies()
    spec = p.policy["spec"]
    assert spec["failurePolicy"] == "Fail"
    assert spec["matchConstraints"]["resourceRules"] == [
        {"apiGroups": ["kiln.dev"], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE"], "resources": ["promotions"]}
    ], "the status subresource (the controller's writes) is not matched"
    assert p.binding["spec"] == {"policyName": "kiln-approval-identity", "validationActions": ["Deny"]}
    assert custom.binding["spec"]["validationActions"] == ["Warn", "Audit"]
    for v in spec["validations"]:
        assert v["reason"] in {"Forbidden", "Invalid"}


@test
def policy_uses_only_cel_that_kubernetes_1_33_has():
    for p in policies():
        for expr in p.expressions():
            _ENV.compile(expr)  # parses
            code = re.sub(r"'[^']*'|\"(\\.|[^\"\\])*\"", "''", expr)
            called = set(re.findall(r"([A-Za-z_]\w*)\s*\(", code))
            assert called <= K8S_133_FUNCTIONS, f"{called - K8S_133_FUNCTIONS} in {expr}"
            assert ".slice(" not in code and "lists." not in code


@test
def positions_cover_the_crd_max_items():
    crd = yaml.safe_load((CHART / "crds/promotions.kiln.dev.yaml").read_text())
    spec_schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    max_items = spec_schema["properties"]["approvals"]["maxItems"]
    p, _ = policies()
    added = next(v["expression"] for v in p.policy["spec"]["variables"] if v["name"] == "added")
    positions = [int(i) for i in re.match(r"\[([\d,]+)\]", added).group(1).split(",")]
    assert positions == list(range(max_items)), (positions, max_items)
    assert f"size(variables.approvals) <= {max_items}" in p.policy["spec"]["validations"][0]["expression"]


# ---- who may write what ---------------------------------------------------------------------

@test
def kiln_itself_needs_no_exemption():
    p, _ = policies()
    created = promotion(approvals=[])
    allowed(p, SA, "CREATE", created)                     # auto environments: no requestedBy
    allowed(p, SA, "CREATE", promotion())                 # before CRD defaulting
    old = promotion([approval("alice", "security")], requested_by="dana")
    with_finalizer = copy.deepcopy(old)
    with_finalizer["metadata"]["finalizers"] = ["kiln.dev/restore"]
    allowed(p, SA, "UPDATE", with_finalizer, old)         # the finalizer patch
    allowed(p, SA, "UPDATE", old, with_finalizer)         # and its removal


@test
def requested_by_is_required_and_is_the_requester():
    """Issue "Tenancy and release integrity" §3: requestedBy is required on create and must be
    the creator; kiln's own ServiceAccount (which stamps its own name) and trusted writers aside."""
    p, custom = policies()
    allowed(p, "dana", "CREATE", promotion([], requested_by="dana"))
    refused(p, "spec.requestedBy is required: set it to your own username (dana)", "dana", "CREATE", promotion([]))
    refused(p, "spec.requestedBy must be your own username (dana)", "dana", "CREATE", promotion([], requested_by="alice"))
    allowed(p, SA, "CREATE", promotion([], requested_by=SA))   # kiln stamps itself
    allowed(custom, ARGO, "CREATE", promotion([]))              # a trusted writer (GitOps)
    allowed(custom, ARGO, "CREATE", promotion([], requested_by="dana"))
    old = promotion([], requested_by="dana")
    allowed(p, "alice", "UPDATE", appended(old, approval("alice", "security")), old)  # unchanged is fine
    changed = copy.deepcopy(old)
    changed["spec"]["requestedBy"] = "bob"
    refused(p, "requestedBy", "alice", "UPDATE", changed, old)
    unset = promotion([])
    framed = promotion([], requested_by="bob")
    refused(p, "requestedBy", "alice", "UPDATE", framed, unset)  # nobody names another as requester later
    allowed(p, "alice", "UPDATE", promotion([], requested_by="alice"), unset)


@test
def alice_approves_as_herself_in_her_role():
    p, _ = policies()
    old = promotion([], requested_by="dana")
    allowed(p, "alice", "UPDATE", appended(old, approval("alice", "security", "CAB 2025-10-28")), old)
    allowed(p, "bob", "UPDATE", appended(old, approval("bob", "product")), old)
    two = appended(old, approval("alice", "security"))
    allowed(p, "bob", "UPDATE", appended(two, approval("bob", "product")), two)
    # The creator is the requester, so cannot bring their own approval along.
    refused(p, "you requested this promotion (alice)", "alice", "CREATE",
            promotion([approval("alice", "security")], requested_by="alice"))


@test
def alice_cannot_approve_as_bob():
    p, _ = policies()
    old = promotion([], requested_by="dana")
    refused(p, "set user to alice", "alice", "UPDATE", appended(old, approval("bob", "product")), old)
    refused(p, "set user to alice", "alice", "UPDATE", appended(old, approval("alice", "security"), approval("bob", "product")), old)
    refused(p, "set user to alice", "alice", "CREATE", promotion([approval("bob", "product")]))


@test
def alice_cannot_edit_remove_or_reorder_bobs_approval():
    p, _ = policies()
    old = promotion([approval("bob", "product", "notes reviewed"), approval("alice", "security")], requested_by="dana")
    edited = copy.deepcopy(old)
    edited["spec"]["approvals"][0]["comment"] = "rubber stamp"
    refused(p, "append-only", "alice", "UPDATE", edited, old)
    reassigned = copy.deepcopy(old)
    reassigned["spec"]["approvals"][0]["user"] = "alice"
    refused(p, "append-only", "alice", "UPDATE", reassigned, old)
    removed = copy.deepcopy(old)
    removed["spec"]["approvals"] = removed["spec"]["approvals"][1:]
    refused(p, "append-only", "alice", "UPDATE", removed, old)
    reordered = copy.deepcopy(old)
    reordered["spec"]["approvals"].reverse()
    refused(p, "append-only", "alice", "UPDATE", reordered, old)
    # Copying Bob's entry verbatim to the end is a new entry in Bob's name.
    refused(p, "set user to alice", "alice", "UPDATE", appended(old, approval("bob", "product", "notes reviewed")), old)


@test
def a_user_without_the_group_cannot_approve_as_security():
    p, custom = policies()
    old = promotion([], requested_by="dana")
    refused(p, "a role your groups grant (none)", "carol", "UPDATE", appended(old, approval("carol", "security")), old)
    refused(p, "a role your groups grant (security)", "alice", "UPDATE", appended(old, approval("alice", "product")), old)
    refused(p, "(none)", "alice", "UPDATE", appended(old, approval("alice", "security")), old, groups=[])
    # Group mapping from values: one group may grant several roles.
    allowed(custom, "erin", "UPDATE", appended(old, approval("erin", "sre")), old)
    allowed(custom, "erin", "UPDATE", appended(old, approval("erin", "security")), old)
    refused(custom, "a role your groups grant (none)", "alice", "UPDATE", appended(old, approval("alice", "security")), old)


@test
def the_requester_cannot_approve_their_own_promotion():
    p, custom = policies()
    old = promotion([], requested_by="dana")
    refused(p, "you requested this promotion (dana)", "dana", "UPDATE", appended(old, approval("dana", "release-engineering")), old)
    old_upper = promotion([], requested_by="Dana")
    refused(p, "you requested this promotion", "dana", "UPDATE", appended(old_upper, approval("dana", "release-engineering")), old_upper)
    refused(p, "you requested this promotion", "dana", "CREATE", promotion([approval("dana", "release-engineering")], requested_by="dana"))
    # With forbidSelfApproval off, admission leaves it to the Environment's rule (kiln's re-check).
    allowed(custom, "erin", "UPDATE", appended(promotion([], requested_by="erin"), approval("erin", "sre")),
            promotion([], requested_by="erin"))


@test
def trusted_writers_are_off_by_default():
    p, custom = policies()
    from_git = promotion([approval("seclead@example.com", "security"), approval("pm@example.com", "product")],
                         requested_by="dana")
    refused(p, "set user to " + ARGO, ARGO, "CREATE", from_git)
    allowed(custom, ARGO, "CREATE", from_git)
    old = promotion([approval("seclead@example.com", "security")])
    allowed(custom, ARGO, "UPDATE", appended(old, approval("pm@example.com", "product")), old)
    edited = copy.deepcopy(old)
    edited["spec"]["approvals"][0]["role"] = "product"
    refused(custom, "append-only", ARGO, "UPDATE", edited, old)  # trust covers names, not history


@test
def every_position_up_to_the_limit_is_checked():
    p, _ = policies()
    full = [approval(f"user{i}", "product") for i in range(31)]
    old = promotion(full, requested_by="dana")
    allowed(p, "alice", "UPDATE", appended(old, approval("alice", "security")), old)
    refused(p, "set user to alice", "alice", "UPDATE", appended(old, approval("bob", "product")), old)
    over = appended(appended(old, approval("alice", "security")), approval("alice", "security"))
    refused(p, "at most 32 approvals", "alice", "UPDATE", over, old)


@test
def a_rollback_promotion_needs_the_rollback_verb():
    """Issue "Tenancy and release integrity" §3: RBAC cannot see spec.rollback, so creating a
    rollback Promotion needs the custom verb `rollback` on promotions (kiln-rollbacker), not only
    `create`."""
    p, custom = policies()
    rb = {"reason": "5xx after v1.4.3", "fromRelease": "ingest-worker-v1-4-3"}
    refused(p, "alice may not create rollback Promotions in namespace ingest", "alice", "CREATE",
            promotion([], requested_by="alice", rollback=rb))
    allowed(p, "oncall", "CREATE", promotion([], requested_by="oncall", rollback=rb))
    allowed(p, "alice", "CREATE", promotion([], requested_by="alice"))   # a forward one: create is enough
    # Trusted approval writers are trusted with names, not with rollbacks.
    refused(custom, "may not create rollback Promotions", ARGO, "CREATE", promotion([], rollback=rb))
    # Approving an existing rollback Promotion needs no rollback verb (the spec.rollback is old).
    old = promotion([], requested_by="oncall", rollback=rb)
    allowed(p, "alice", "UPDATE", appended(old, approval("alice", "security")), old)
