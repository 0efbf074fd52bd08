"""The Argo CD health checks (files/argocd-health-*.lua) run by a real Lua 5.1 runtime (lupa;
Argo CD's gopher-lua implements Lua 5.1) against sample Releases and Promotions, in the
sandbox Argo CD gives them (no io, os, require or load), and the argocd-cm snippet in
docs/install.md kept equal to the files."""

from __future__ import annotations

import re
import textwrap
from typing import Any

import lupa.lua51 as lua51

from kilntest import CHART, ROOT, test

PROMOTION = (CHART / "files/argocd-health-promotion.lua").read_text()
RELEASE = (CHART / "files/argocd-health-release.lua").read_text()


def to_lua(rt: Any, value: Any) -> Any:
    """JSON to Lua as Argo CD converts it: objects and arrays become tables (arrays 1-indexed)."""
    if isinstance(value, dict):
        return rt.table_from({k: to_lua(rt, v) for k, v in value.items()})
    if isinstance(value, list):
        return rt.table_from([to_lua(rt, v) for v in value])
    return value


def health(script: str, obj: dict[str, Any]) -> tuple[str, str]:
    rt = lua51.LuaRuntime(unpack_returned_tuples=True)
    g = rt.globals()
    for unsafe in ["io", "os", "require", "load", "loadfile", "loadstring", "dofile", "debug", "package"]:
        g[unsafe] = None
    g.obj = to_lua(rt, obj)
    hs = rt.execute(script)
    assert hs is not None, "the script returned nothing"
    status, message = hs["status"], hs["message"]
    assert status in {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}, status
    assert isinstance(message, str) and message, message
    return status, message


def cond(kind: str, status: bool, reason: str, message: str, generation: int = 2) -> dict[str, Any]:
    return {"type": kind, "status": "True" if status else "False", "reason": reason, "message": message,
            "observedGeneration": generation, "lastTransitionTime": "2025-10-28T14:05:00Z"}


def kstatus(ready: bool, reconciling: bool, stalled: bool, reason: str, message: str) -> list[dict[str, Any]]:
    return [cond("Ready", ready, reason, message), cond("Reconciling", reconciling, reason, message),
            cond("Stalled", stalled, reason, message)]


def promotion(phase: str | None, *, generation: int = 2, observed: int | None = 2, message: str = "",
              stalled: bool = False, rollback: dict[str, Any] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {"apiVersion": "kiln.dev/v1alpha1", "kind": "Promotion",
                           "metadata": {"name": "web-v1-prod", "namespace": "shop", "generation": generation},
                           "spec": {"release": "web-v1", "environment": "prod"}}
    if phase is None:
        return obj
    ready = phase == "Succeeded"
    terminal_bad = phase in {"RolledBack", "Failed", "Aborted"}
    status: dict[str, Any] = {"phase": phase, "message": message or f"phase {phase}",
                              "conditions": kstatus(ready, not ready and not terminal_bad and not stalled,
                                                    terminal_bad or stalled, "InvalidSpec" if stalled else phase,
                                                    message or f"phase {phase}")}
    if observed is not None:
        status["observedGeneration"] = observed
    if rollback:
        status["rollback"] = rollback
    obj["status"] = status
    return obj


@test
def promotion_phases_map_to_argo_health():
    expected = {
        "Succeeded": "Healthy",
        "Queued": "Progressing",
        "WaitingForGates": "Progressing",
        "Deploying": "Progressing",
        "Baking": "Progressing",
        "WaitingForApproval": "Suspended",
        "Frozen": "Suspended",
        "RollingBack": "Degraded",
        "RolledBack": "Degraded",
        "Failed": "Degraded",
        "Aborted": "Degraded",
    }
    for phase, want in expected.items():
        status, message = health(PROMOTION, promotion(phase, message=f"the {phase} message"))
        assert status == want, (phase, status)
        assert message == f"the {phase} message", (phase, message)


@test
def promotion_messages_carry_the_rollback_cause():
    rb = {"cause": "alarm", "message": "alarm web-5xx in ALARM since 14:05:02", "detectedAt": "2025-10-28T14:05:03Z"}
    assert health(PROMOTION, promotion("RollingBack", rollback=rb)) == \
        ("Degraded", "Rolling back: alarm web-5xx in ALARM since 14:05:02")
    assert health(PROMOTION, promotion("RolledBack", rollback=rb)) == \
        ("Degraded", "RolledBack: alarm web-5xx in ALARM since 14:05:02")


@test
def promotion_with_an_invalid_spec_is_degraded():
    status, message = health(PROMOTION, promotion("WaitingForGates", stalled=True,
                                                  message="validation: unknown environment qa"))
    assert (status, message) == ("Degraded", "validation: unknown environment qa")


@test
def promotion_not_yet_seen_by_kiln_is_progressing():
    assert health(PROMOTION, promotion(None)) == ("Progressing", "Waiting for kiln to report status")
    assert health(PROMOTION, promotion("Succeeded", generation=3, observed=2)) == \
        ("Progressing", "Waiting for kiln to observe generation 3")
    assert health(PROMOTION, promotion("Succeeded", generation=3, observed=None))[0] == "Progressing"
    # An unknown future phase falls back on the kstatus conditions.
    unknown = promotion("Verifying")
    unknown["status"]["conditions"] = kstatus(True, False, False, "Verifying", "verified")
    assert health(PROMOTION, unknown)[0] == "Healthy"
    unknown["status"]["conditions"] = kstatus(False, True, False, "Verifying", "verifying")
    assert health(PROMOTION, unknown)[0] == "Progressing"


def release(phase: str | None, envs: list[tuple[str, str, str]] = (), *, current: str | None = None,
            generation: int = 1, observed: int | None = 1, invalid: bool = False) -> dict[str, Any]:
    obj: dict[str, Any] = {"apiVersion": "kiln.dev/v1alpha1", "kind": "Release",
                           "metadata": {"name": "web-v1", "namespace": "shop", "generation": generation},
                           "spec": {"service": "web", "version": "v1.0.0"}}
    if phase is None:
        return obj
    ready = phase == "Succeeded"
    stalled = invalid or phase in {"RolledBack", "Failed"}
    message = "invalid spec: environment qa does not exist" if invalid else f"{phase} in {current}"
    status: dict[str, Any] = {
        "phase": phase,
        "environments": [{"name": n, "phase": p, **({"message": m} if m else {})} for n, p, m in envs],
        "conditions": kstatus(ready, not ready and not stalled, stalled, "InvalidSpec" if invalid else phase, message),
    }
    if current:
        status["currentEnvironment"] = current
    if observed is not None:
        status["observedGeneration"] = observed
    obj["status"] = status
    return obj


@test
def release_health_follows_the_environment_it_is_in():
    done = ("dev", "Succeeded", "")
    assert health(RELEASE, release("Succeeded", [done, ("stg", "Succeeded", ""), ("prod", "Succeeded", "")],
                                   current="prod"))[0] == "Healthy"
    assert health(RELEASE, release("Progressing", [done, ("stg", "Baking", "baking until 15:00"), ("prod", "Pending", "")],
                                   current="stg")) == ("Progressing", "stg: Baking (baking until 15:00)")
    assert health(RELEASE, release("Progressing", [done, ("stg", "Succeeded", ""),
                                                   ("prod", "WaitingForApproval", "needs 1 security approval")],
                                   current="prod")) == ("Suspended", "prod: WaitingForApproval (needs 1 security approval)")
    assert health(RELEASE, release("Progressing", [done, ("stg", "Succeeded", ""), ("prod", "Frozen", "weekend")],
                                   current="prod"))[0] == "Suspended"
    # A non-auto environment waiting for someone to create its Promotion.
    awaiting = release("Progressing", [done, ("stg", "AwaitingPromotion", "stg is not auto")], current="dev")
    assert health(RELEASE, awaiting) == ("Suspended", "stg: AwaitingPromotion (stg is not auto)")
    assert health(RELEASE, release("Progressing", [done, ("stg", "RollingBack", "alarm stg-5xx")], current="stg")) == \
        ("Degraded", "Rolling back in stg: RollingBack (alarm stg-5xx)")
    assert health(RELEASE, release("Pending", [("dev", "Pending", "")]))[0] == "Progressing"


@test
def release_failures_and_invalid_specs_are_degraded():
    assert health(RELEASE, release("RolledBack", [("dev", "Succeeded", ""), ("stg", "RolledBack", "alarm")],
                                   current="stg"))[0] == "Degraded"
    assert health(RELEASE, release("Failed", [("dev", "Failed", "hook failed")], current="dev"))[0] == "Degraded"
    assert health(RELEASE, release("Pending", [("dev", "Pending", "")], invalid=True)) == \
        ("Degraded", "invalid spec: environment qa does not exist")


@test
def release_not_yet_seen_by_kiln_is_progressing():
    assert health(RELEASE, release(None))[0] == "Progressing"
    assert health(RELEASE, release("Succeeded", [("dev", "Succeeded", "")], generation=2, observed=1)) == \
        ("Progressing", "Waiting for kiln to observe generation 2")


@test
def the_argocd_cm_snippet_in_the_docs_is_the_shipped_scripts():
    doc = (ROOT / "docs/install.md").read_text()
    for kind, script in [("Release", RELEASE), ("Promotion", PROMOTION)]:
        m = re.search(rf"^( *)resource\.customizations\.health\.kiln\.dev_{kind}: \|\n((?:\1  .*\n|\n)+)", doc, re.M)
        assert m, f"docs/install.md has no argocd-cm entry for {kind}"
        assert textwrap.dedent(m.group(2)).strip() == script.strip(), \
            f"the {kind} health check in docs/install.md differs from charts/kiln/files/"
