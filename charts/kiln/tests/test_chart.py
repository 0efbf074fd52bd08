"""The chart rendered by the real Helm engine, for default and non-default values: what is
created, the Deployment's security and probes, the controller's flags, RBAC (exact verbs,
nothing on Secrets), lint, and values refused by values.schema.json."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import helm_python as helm
import jsonschema
import yaml

from kilntest import CHART, NAMESPACE, ROOT, args, container, controller_flags, kinds, notes, objects, only, render, test

DIGEST = "sha256:" + "ab" * 32

# Values that turn on or change everything the chart has.
NON_DEFAULT: dict[str, Any] = {
    "image": {"repository": "111111111111.dkr.ecr.ca-central-1.amazonaws.com/kiln-controller", "digest": DIGEST,
              "pullPolicy": "IfNotPresent"},
    "replicas": 3,
    "controller": {
        "namespaces": ["ingest", "payments"],
        "shardSelector": "kiln.dev/shard in (a,b)",
        "alarmPollInterval": "500ms",
        "alarmHistory": False,
        "concurrency": 4,
        "logLevel": "kiln_controller=debug,kube=info",
        "logFormat": "text",
        "aws": {"region": "ca-central-1", "stsEndpointUrl": "https://sts.ca-central-1.amazonaws.com",
                "endpointUrl": "http://127.0.0.1:5000"},
        "leaderElection": {"leaseName": "kiln-shard-a", "leaseDuration": "20s", "renewDeadline": "12s",
                           "retryPeriod": "3s"},
        "metricsPort": 9090,
        "extraEnv": [{"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"}],
    },
    "serviceAccount": {"aws": {"roleArn": "arn:aws:iam::999999999999:role/kiln-controller"}},
    "priorityClassName": "system-cluster-critical",
    "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                   "whenUnsatisfiable": "ScheduleAnyway",
                                   "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "kiln"}}}],
    "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "prometheusRule": {"enabled": True, "alertLabels": {"team": "platform"}},
    "dashboards": {"enabled": True},
    "networkPolicy": {"enabled": True, "egressCidrs": ["10.0.0.0/8"],
                      "metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]},
    "userRoles": {"aggregateReleaserToEdit": False},
    "admissionPolicy": {"validationActions": ["Warn", "Audit"], "groupRoles": {
        # Helm merges maps with the defaults: null removes a default group.
        "oidc:sec-team": ["security", "sre"], "kiln:security": None, "kiln:sre": None}, 
                        "forbidSelfApproval": False,
                        "trustedApprovalWriters": ["system:serviceaccount:argocd:argocd-application-controller"]},
}

CONTROLLER_RULES = {
    ("kiln.dev", r, v)
    for r in ["releases", "promotions", "environments", "freezewindows", "rollbackpolicies"]
    for v in ["list", "watch"]
} | {("kiln.dev", "promotions", v) for v in ["get", "create", "patch"]} | {
    ("kiln.dev", "releases/status", "patch"),
    ("kiln.dev", "promotions/status", "patch"),
    ("kiln.dev", "environments/status", "patch"),
    ("kiln.dev", "freezewindows/status", "patch"),
    ("kiln.dev", "rollbackpolicies/status", "patch"),
    ("events.k8s.io", "events", "create"),
    ("events.k8s.io", "events", "patch"),
}


def triples(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    out = set()
    for rule in role["rules"]:
        for g in rule["apiGroups"]:
            for r in rule["resources"]:
                for v in rule["verbs"]:
                    out.add((g, r, v))
    return out


def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Helm's coalescing: maps merge, other values replace, null deletes a default."""
    out = copy.deepcopy(base)
    for k, v in extra.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merged(out[k], v)
        else:
            out[k] = v
    return out


# ---- what is created ------------------------------------------------------------------------

@test
def default_render_creates_the_controller_rbac_and_the_policy():
    objs = objects()
    assert kinds(objs) == sorted([
        "ClusterRole", "ClusterRole", "ClusterRole", "ClusterRole", "ClusterRole", "ClusterRoleBinding", "Deployment",
        "PodDisruptionBudget", "Role", "RoleBinding", "Service", "ServiceAccount",
        "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
    ]), kinds(objs)
    for o in objs:
        assert o["kind"] != "Secret", "the chart never creates a Secret"
        labels = o["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "kiln" and labels["app.kubernetes.io/managed-by"] == "Helm", o
        if o["kind"] not in {"ClusterRole", "ClusterRoleBinding", "ValidatingAdmissionPolicy",
                             "ValidatingAdmissionPolicyBinding"}:
            assert o["metadata"]["namespace"] == NAMESPACE, o["metadata"]
    # The admission policy needs admissionregistration.k8s.io/v1 (GA in 1.30).
    assert only(objs, "ValidatingAdmissionPolicy")["apiVersion"] == "admissionregistration.k8s.io/v1"


@test
def non_default_render_adds_the_optional_objects():
    objs = objects(NON_DEFAULT)
    for kind in ["ServiceMonitor", "PrometheusRule", "NetworkPolicy", "ConfigMap", "PodDisruptionBudget"]:
        only(objs, kind)
    sm = only(objs, "ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}]
    assert sm["spec"]["selector"]["matchLabels"] == only(objs, "Service")["spec"]["selector"]
    dash = only(objs, "ConfigMap")
    assert dash["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dash["data"]["kiln-controller.json"])["uid"] == "kiln-controller"
    np = only(objs, "NetworkPolicy")
    assert np["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert np["spec"]["ingress"][0]["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    https = np["spec"]["egress"][1]
    assert sorted(p["port"] for p in https["ports"]) == [443, 6443], https
    assert https["to"] == [{"ipBlock": {"cidr": "10.0.0.0/8"}}]
    assert np["spec"]["podSelector"] == only(objs, "Deployment")["spec"]["selector"]


@test
def optional_objects_can_all_be_turned_off():
    objs = objects({"rbac": {"create": False}, "userRoles": {"create": False}, "admissionPolicy": {"enabled": False},
                    "serviceAccount": {"create": False, "name": "existing"}, "podDisruptionBudget": {"enabled": False}})
    assert kinds(objs) == ["Deployment", "Service"], kinds(objs)
    assert only(objs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "existing"


# ---- the Deployment -------------------------------------------------------------------------

@test
def deployment_runs_two_replicas_with_leader_election_and_spreads_them():
    objs = objects()
    dep = only(objs, "Deployment")
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    pod = dep["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 60
    term = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    a = args(objs)
    assert a["leader-election"] == "true" and a["lease-name"] == "kiln-controller"
    assert (a["lease-duration"], a["lease-renew-deadline"], a["lease-retry-period"]) == ("15s", "10s", "2s")
    env = {e["name"]: e for e in container(objs)["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["KILN_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert a["controller-namespace"] == "$(KILN_NAMESPACE)"
    pdb = only(objs, "PodDisruptionBudget")
    assert pdb["spec"] == {"minAvailable": 1, "selector": dep["spec"]["selector"]}
    try:
        render({"podDisruptionBudget": {"minAvailable": 2}})
    except helm.HelmError as e:
        assert "minAvailable must be lower than replicas" in str(e), e
    else:
        raise AssertionError("a PodDisruptionBudget that blocks every drain rendered")


@test
def pod_meets_the_restricted_pod_security_standard():
    for values in [{}, NON_DEFAULT]:
        objs = objects(values)
        pod = only(objs, "Deployment")["spec"]["template"]["spec"]
        assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                                          "seccompProfile": {"type": "RuntimeDefault"}}, pod["securityContext"]
        sc = container(objs)["securityContext"]
        assert sc == {"allowPrivilegeEscalation": False, "privileged": False, "readOnlyRootFilesystem": True,
                      "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]},
                      "seccompProfile": {"type": "RuntimeDefault"}}, sc
        for key in ["hostNetwork", "hostPID", "hostIPC", "hostUsers", "initContainers", "ephemeralContainers"]:
            assert key not in pod, key
        # Only the explicit API token volume: no hostPath, no Secret volume.
        assert pod["automountServiceAccountToken"] is False
        assert [v["name"] for v in pod["volumes"]] == ["kube-api-access"]
        sources = pod["volumes"][0]["projected"]["sources"]
        assert sources[0] == {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}}
        assert pod["volumes"][0]["projected"]["defaultMode"] == 0o444
        assert sources[1]["configMap"]["name"] == "kube-root-ca.crt"
        assert container(objs)["volumeMounts"] == [{"name": "kube-api-access", "readOnly": True,
                                                    "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]
        for e in container(objs)["env"]:
            assert "secretKeyRef" not in json.dumps(e), e
        assert "envFrom" not in container(objs)


@test
def probes_use_livez_and_readyz_on_the_metrics_port():
    for values, port in [({}, 8080), (NON_DEFAULT, 9090)]:
        objs = objects(values)
        c = container(objs)
        assert c["ports"] == [{"name": "metrics", "containerPort": port, "protocol": "TCP"}]
        assert c["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "metrics"}
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
        assert args(objs)["metrics-addr"] == f"0.0.0.0:{port}"
        svc = only(objs, "Service")
        assert svc["spec"]["ports"] == [{"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}]
        assert svc["spec"]["selector"] == only(objs, "Deployment")["spec"]["selector"]["matchLabels"]


@test
def resources_are_set_and_sized_as_documented():
    r = container(objects())["resources"]
    assert r == {"requests": {"cpu": "100m", "memory": "192Mi"}, "limits": {"cpu": "1", "memory": "384Mi"}}, r
    # The request covers, and the limit doubles, the controller's measured peak RSS at 10,000
    # Releases and 10,000 Promotions as docs/benchmarks.md reports it now: re-measuring there
    # with a larger result fails here until the chart is re-sized.
    bench = (ROOT / "docs" / "benchmarks.md").read_text()
    row = next((line for line in bench.splitlines() if line.startswith("| peak RSS (`VmHWM`) when all are reconciled")),
               None)
    assert row is not None, "docs/benchmarks.md lost its controller peak RSS row"
    peaks = [float(x) for x in re.findall(r"(\d+(?:\.\d+)?)\s*(?:–\s*|MiB)", row.split("|")[2])]
    assert peaks, row
    peak = max(peaks)
    mebi = lambda q: float(q.removesuffix("Mi"))
    assert mebi(r["requests"]["memory"]) >= peak, (r, peak)
    assert mebi(r["limits"]["memory"]) >= 2 * peak, (r, peak)
    comment = (CHART / "values.yaml").read_text()
    assert "sized from docs/benchmarks.md" in comment


@test
def image_is_the_app_version_by_default_and_the_digest_when_given():
    assert container(objects())["image"] == "kiln-controller:0.1.0"
    assert container(objects({"image": {"tag": "v0.2.0"}}))["image"] == "kiln-controller:v0.2.0"
    assert container(objects(NON_DEFAULT))["image"] == \
        f"111111111111.dkr.ecr.ca-central-1.amazonaws.com/kiln-controller@{DIGEST}"


# ---- the controller's flags -----------------------------------------------------------------

@test
def every_rendered_flag_is_a_real_controller_flag():
    known = controller_flags()
    for values in [{}, NON_DEFAULT, {"replicas": 1, "controller": {"leaderElection": {"enabled": False}}}]:
        for flag in args(objects(values)):
            assert flag in known, f"--{flag} is not a kiln-controller flag (config.rs has {sorted(known)})"
    for e in container(objects(NON_DEFAULT))["env"]:
        if e["name"].startswith("KILN_"):
            assert e["name"] in known.values(), e


@test
def every_controller_flag_is_exposed_in_values():
    seen = set(args(objects())) | set(args(objects(NON_DEFAULT)))
    # --identity: the controller derives it from POD_NAME (set from the downward API) and its pid,
    # which is what each replica needs; a fixed value would make replicas share an identity.
    # --check-resolve: a diagnostic that exits at once (scripts/image-check), never a setting.
    missing = set(controller_flags()) - seen - {"identity", "check-resolve"}
    assert not missing, f"flags not exposed by the chart: {sorted(missing)}"


@test
def non_default_values_reach_the_container_args():
    a = args(objects(NON_DEFAULT))
    assert a["namespaces"] == "ingest,payments"
    assert a["shard-selector"] == "kiln.dev/shard in (a,b)"
    assert a["alarm-poll-interval"] == "500ms" and a["alarm-history"] == "false"
    assert a["concurrency"] == "4"
    assert a["log-level"] == "kiln_controller=debug,kube=info" and a["log-format"] == "text"
    assert a["aws-region"] == "ca-central-1"
    assert a["sts-endpoint-url"] == "https://sts.ca-central-1.amazonaws.com"
    assert a["aws-endpoint-url"] == "http://127.0.0.1:5000"
    assert (a["lease-name"], a["lease-duration"], a["lease-renew-deadline"], a["lease-retry-period"]) == \
        ("kiln-shard-a", "20s", "12s", "3s")
    objs = objects(NON_DEFAULT)
    assert only(objs, "Deployment")["spec"]["replicas"] == 3
    role = only(objs, "Role")
    assert role["rules"][1]["resourceNames"] == ["kiln-shard-a"], "the Lease rule follows the lease name"
    env = {e["name"]: e.get("value") for e in container(objs)["env"]}
    assert env["AWS_STS_REGIONAL_ENDPOINTS"] == "regional"
    defaults = args(objects())
    assert "namespaces" not in defaults and "shard-selector" not in defaults and "aws-endpoint-url" not in defaults


@test
def without_leader_election_one_replica_is_replaced_never_doubled():
    objs = objects({"replicas": 1, "controller": {"leaderElection": {"enabled": False}}})
    dep = only(objs, "Deployment")
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    assert args(objs)["leader-election"] == "false" and "lease-name" not in args(objs)
    assert "Role" not in kinds(objs) and "PodDisruptionBudget" not in kinds(objs)
    try:
        render({"replicas": 2, "controller": {"leaderElection": {"enabled": False}}})
    except helm.HelmError as e:
        assert "needs controller.leaderElection.enabled" in str(e), e
    else:
        raise AssertionError("two replicas without leader election rendered")


@test
def service_account_carries_the_irsa_role_and_no_keys():
    sa = only(objects(), "ServiceAccount")
    assert "annotations" not in sa["metadata"], "no IRSA annotation without a role"
    assert sa["automountServiceAccountToken"] is False
    sa = only(objects(NON_DEFAULT), "ServiceAccount")
    assert sa["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::999999999999:role/kiln-controller",
        "eks.amazonaws.com/sts-regional-endpoints": "true",
    }
    assert "EKS Pod Identity" in notes()
    assert "EKS Pod Identity" not in notes(NON_DEFAULT)


# ---- RBAC -----------------------------------------------------------------------------------

@test
def controller_rbac_has_exactly_the_verbs_it_uses():
    for values in [{}, NON_DEFAULT]:
        objs = objects(values)
        cr = only(objs, "ClusterRole", "kiln-controller")
        assert triples(cr) == CONTROLLER_RULES, sorted(triples(cr) ^ CONTROLLER_RULES)
        crb = only(objs, "ClusterRoleBinding", "kiln-controller")
        assert crb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kiln-controller"}
        assert crb["subjects"] == [{"kind": "ServiceAccount", "name": "kiln", "namespace": NAMESPACE}]
        role = only(objs, "Role")
        assert role["metadata"]["namespace"] == NAMESPACE
        lease = values.get("controller", {}).get("leaderElection", {}).get("leaseName", "kiln-controller")
        assert role["rules"] == [
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": [lease],
             "verbs": ["get", "update"]},
        ], role["rules"]
        rb = only(objs, "RoleBinding")
        assert rb["roleRef"]["name"] == role["metadata"]["name"] and rb["subjects"] == crb["subjects"]


@test
def nobody_gets_secrets_wildcards_or_workloads():
    for values in [{}, NON_DEFAULT]:
        for o in objects(values):
            if o["kind"] not in {"ClusterRole", "Role"}:
                continue
            for g, r, v in triples(o):
                assert "*" not in (g, r, v), (o["metadata"]["name"], g, r, v)
                assert g in {"kiln.dev", "events.k8s.io", "coordination.k8s.io"}, (o["metadata"]["name"], g, r)
                assert r not in {"secrets", "configmaps", "pods", "deployments", "serviceaccounts"}, r
                assert v not in {"escalate", "bind", "impersonate", "delete", "deletecollection"}, (o["metadata"]["name"], v)


@test
def the_controller_code_calls_only_what_the_rbac_allows():
    """A guard for the future: the controller may use kiln's kinds, Events (through kube-runtime's
    Recorder) and the Lease. A new Kubernetes type in the code must come with a chart change."""
    used: set[str] = set()
    apis: set[str] = set()
    for f in (ROOT / "controller/kiln-controller/src").rglob("*.rs"):
        code = re.sub(r"//.*", "", f.read_text())
        used |= set(re.findall(r"k8s_openapi::api::(\w+::\w+)", code))
        apis |= set(re.findall(r"Api::<(\w+)>|Api<(\w+)>", code) and
                    [a or b for a, b in re.findall(r"Api::<(\w+)>|Api<(\w+)>", code)])
        assert "Secret" not in code, f"{f.name} uses Secrets"
    assert used == {"coordination::v1"}, f"the controller uses Kubernetes APIs the chart does not grant: {used}"
    assert apis <= {"Release", "Promotion", "Environment", "FreezeWindow", "RollbackPolicy", "Lease", "K"}, apis


@test
def user_roles_view_release_and_approve():
    objs = objects()
    viewer, releaser, approver = (only(objs, "ClusterRole", n) for n in ["kiln-viewer", "kiln-releaser", "kiln-approver"])
    kinds5 = ["releases", "promotions", "environments", "freezewindows", "rollbackpolicies"]
    read = {("kiln.dev", r, v) for r in kinds5 for v in ["get", "list", "watch"]}
    assert triples(viewer) == read
    assert triples(releaser) == read | {("kiln.dev", "releases", "create"), ("kiln.dev", "promotions", "create"),
                                        ("kiln.dev", "releases", "patch"), ("kiln.dev", "releases", "update")}
    assert triples(approver) == read | {("kiln.dev", "promotions", "patch")}
    assert viewer["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert releaser["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert not any(k.startswith("rbac.authorization.k8s.io/aggregate") for k in approver["metadata"]["labels"]), \
        "kiln-approver is never aggregated"
    releaser = only(objects(NON_DEFAULT), "ClusterRole", "kiln-releaser")
    assert "rbac.authorization.k8s.io/aggregate-to-edit" not in releaser["metadata"]["labels"]
    # Rolling back (spec.rollback) is its own permission: the custom verb the admission policy
    # checks, granted only by kiln-rollbacker, which is never aggregated.
    rollbacker = only(objs, "ClusterRole", "kiln-rollbacker")
    assert triples(rollbacker) == read | {("kiln.dev", "promotions", "create"), ("kiln.dev", "promotions", "rollback")}
    assert not any(k.startswith("rbac.authorization.k8s.io/aggregate") for k in rollbacker["metadata"]["labels"])
    for role in (viewer, releaser, approver):
        assert ("kiln.dev", "promotions", "rollback") not in triples(role)


# ---- lint and the schema --------------------------------------------------------------------

def lint_errors(values: dict[str, Any] | None, kube: str = "v1.33.0") -> list[str]:
    report = helm.lint(str(CHART), values, strict=True, namespace=NAMESPACE, kube_version=kube)
    return [f"{m['path']}: {m['error']}" for m in report["messages"] if m["severity"] >= 2] + report.get("errors", [])


@test
def helm_lint_is_clean_for_default_and_non_default_values():
    assert lint_errors(None) == [], lint_errors(None)
    assert lint_errors(NON_DEFAULT) == [], lint_errors(NON_DEFAULT)


@test
def kubernetes_older_than_1_33_is_refused():
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert meta["apiVersion"] == "v2" and meta["kubeVersion"] == ">=1.33.0-0"
    # Chart.yaml's kubeVersion is checked by helm install; the engine's render (what `helm
    # template --kube-version` and Argo CD run) checks it through the Deployment template.
    # helm-python-sdk's Chart.render does not expose kube_version, so the native call is used.
    from helm_python import _native

    def render_for(kube: str) -> dict[str, str]:
        opts = {"name": "kiln", "namespace": NAMESPACE, "is_install": True, "kube_version": kube}
        with helm.Chart.load(str(CHART)) as chart:
            return json.loads(_native.call_string("helm_render", chart._raw(), json.dumps({}), json.dumps(opts)))

    for ok in ["v1.33.0", "v1.34.2", "v1.33.1-eks-1234"]:
        assert any("Deployment" in t for t in render_for(ok).values()), ok
    for old in ["v1.32.9", "v1.30.0"]:
        try:
            render_for(old)
        except helm.HelmError as e:
            assert "needs Kubernetes 1.33 or later" in str(e), e
        else:
            raise AssertionError(f"rendered for Kubernetes {old}")


INVALID: list[tuple[str, dict[str, Any]]] = [
    ("an access key field", {"image": {"accessKey": "AKIAIOSFODNN7EXAMPLE"}}),
    ("AWS keys at the top level", {"aws": {"accessKeyId": "AKIAIOSFODNN7EXAMPLE", "secretAccessKey": "x"}}),
    ("a secret key next to the IRSA role", {"serviceAccount": {"aws": {"secretAccessKey": "x"}}}),
    ("an access key annotation", {"serviceAccount": {"annotations": {"aws-access-key-id": "AKIA"}}}),
    ("AWS_SECRET_ACCESS_KEY as extraEnv", {"controller": {"extraEnv": [{"name": "AWS_SECRET_ACCESS_KEY", "value": "x"}]}}),
    ("AWS_ACCESS_KEY_ID as extraEnv", {"controller": {"extraEnv": [{"name": "AWS_ACCESS_KEY_ID", "value": "x"}]}}),
    ("extraEnv from a Secret", {"controller": {"extraEnv": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}}),
    ("replicas as a string", {"replicas": "2"}),
    ("zero replicas", {"replicas": 0}),
    ("a poll interval that is not a duration", {"controller": {"alarmPollInterval": "soon"}}),
    ("a lease duration without unit", {"controller": {"leaderElection": {"leaseDuration": "15"}}}),
    ("an unknown log format", {"controller": {"logFormat": "xml"}}),
    ("a digest that is not sha256", {"image": {"digest": "latest"}}),
    ("a role ARN that is not one", {"serviceAccount": {"aws": {"roleArn": "kiln-controller"}}}),
    ("an unknown validation action", {"admissionPolicy": {"validationActions": ["Block"]}}),
    ("a role that is not a DNS label", {"admissionPolicy": {"groupRoles": {"kiln:security": ["Security!"]}}}),
    ("a group with a quote", {"admissionPolicy": {"groupRoles": {'kiln"x': ["security"]}}}),
    ("a typo in a key", {"controller": {"logLevl": "debug"}}),
    ("a privileged port for metrics", {"controller": {"metricsPort": 80}}),
]


@test
def the_schema_refuses_invalid_values_in_helm():
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema({})
        chart.validate_schema(NON_DEFAULT)
        for why, values in INVALID:
            try:
                chart.validate_schema(values)
            except helm.HelmValuesError:
                pass
            else:
                raise AssertionError(f"values.schema.json accepted {why}: {values}")
    # And an install (a render with the values) is refused, not only a separate check.
    for why, values in INVALID:
        try:
            render(values)
        except helm.HelmError:
            pass
        else:
            raise AssertionError(f"the chart rendered with {why}: {values}")


@test
def the_schema_is_valid_draft_07_and_matches_the_defaults():
    """Argo CD and older Helm 3 releases validate with a draft-07 library: check with another
    implementation than Helm's."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.Draft7Validator(schema).validate(defaults)
    jsonschema.Draft7Validator(schema).validate(merged(defaults, NON_DEFAULT))
    for why, values in INVALID:
        errors = list(jsonschema.Draft7Validator(schema).iter_errors(merged(defaults, values)))
        assert errors, f"jsonschema accepted {why}"


@test
def every_value_is_documented():
    """Each key in values.yaml has a comment above it (or its parent's section comment)."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)([\w\"-:.]+):(\s|$)", line)
        if not m or line.lstrip().startswith("#") or line.lstrip().startswith("-"):
            continue
        prev = lines[i - 1].strip() if i else ""
        is_section = line.rstrip().endswith(":")
        if not prev.startswith("#") and not is_section and not re.match(r'^\s*"', line):
            undocumented.append(line.strip())
    assert not undocumented, f"values without a comment: {undocumented}"


@test
def the_crds_ship_in_the_chart_and_match_the_repository_copy():
    for src in sorted((ROOT / "crds").glob("*.yaml")):
        copy_ = CHART / "crds" / src.name
        assert copy_.exists(), f"{copy_} missing: run cargo run -p kiln-crdgen"
        assert copy_.read_text() == src.read_text(), f"{copy_} differs from {src}: run cargo run -p kiln-crdgen"
    with helm.Chart.load(str(CHART)) as chart:
        assert sorted(c["filename"].split("/")[-1] for c in chart.crds) == sorted(p.name for p in (ROOT / "crds").glob("*.yaml"))


@test
def the_install_guide_snippets_parse():
    """Every JSON and YAML block in docs/install.md is valid (IAM policies, values, manifests)."""
    import textwrap
    doc = (ROOT / "docs/install.md").read_text()
    blocks = re.findall(r"```(json|yaml)\n(.*?)```", doc, re.S)
    assert len([b for b in blocks if b[0] == "json"]) >= 5, "the IAM templates are missing"
    for lang, body in blocks:
        if lang == "json":
            policy = json.loads(body)
            assert policy["Version"] == "2012-10-17", policy
            for st in policy["Statement"]:
                assert st["Effect"] == "Allow" and "Action" in st, st
                actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
                assert not any(a.endswith("*") for a in actions), f"wildcard action in {st}"
        else:
            docs = list(yaml.safe_load_all(textwrap.dedent(body)))
            assert docs and all(d is not None for d in docs), body[:200]
    # The values example is valid for the chart.
    example = next(b for lang, b in blocks if lang == "yaml" and b.startswith("# kiln-values.yaml"))
    values = yaml.safe_load(example.replace("<64 hex>", "ab" * 32))
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema(values)
    objs = objects(values)
    assert container(objs)["image"].endswith("@" + DIGEST)
    roles = only(objs, "ValidatingAdmissionPolicy")["spec"]["variables"]
    group_roles = json.loads(next(v["expression"] for v in roles if v["name"] == "groupRoles"))
    assert group_roles == {"oidc:release-engineering": ["release-engineering"], "oidc:security": ["security"],
                           "oidc:product-owners": ["product"], "oidc:sre": ["sre"]}, group_roles


@test
def security_contexts_are_restricted_by_default_and_overridable():
    pod = only(objects(), "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == 65532 and pod["securityContext"]["runAsNonRoot"] is True
    c = container(objects())["securityContext"]
    assert c["readOnlyRootFilesystem"] is True and c["capabilities"] == {"drop": ["ALL"]}
    assert c["allowPrivilegeEscalation"] is False
    # A platform that assigns its own UIDs (OpenShift's restricted SCC) drops the fixed ones: Helm
    # merges values maps, so a key is removed by setting it to null.
    assigned = {"podSecurityContext": {"runAsUser": None, "runAsGroup": None}}
    pod = only(objects(assigned), "Deployment")["spec"]["template"]["spec"]
    want = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    assert pod["securityContext"] == want, pod["securityContext"]
