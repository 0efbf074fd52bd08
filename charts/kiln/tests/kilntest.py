"""Shared helpers for the kiln chart's tests: rendering with the real Helm engine
(helm-python-sdk embeds Helm v4), a tiny test runner, and paths.

Every import here is a hard requirement: a missing package fails the run, it never skips.
"""

from __future__ import annotations

import re
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

import helm_python as helm
import yaml

TESTS = Path(__file__).resolve().parent
CHART = TESTS.parent
ROOT = CHART.parent.parent
RELEASE = "kiln"
NAMESPACE = "kiln-system"


def render(values: dict[str, Any] | None = None, *, name: str = RELEASE, namespace: str = NAMESPACE) -> dict[str, str]:
    """The chart's templates rendered by Helm, as {template path: text}."""
    with helm.Chart.load(str(CHART)) as chart:
        return chart.render(values=values or {}, name=name, namespace=namespace, is_install=True)


def objects(values: dict[str, Any] | None = None, **kw: Any) -> list[dict[str, Any]]:
    """Every Kubernetes object the chart renders (NOTES.txt and empty templates left out)."""
    out = []
    for path, text in sorted(render(values, **kw).items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                assert "kind" in doc and "apiVersion" in doc, f"{path}: not a Kubernetes object: {doc!r}"
                out.append(doc)
    return out


def notes(values: dict[str, Any] | None = None) -> str:
    return next(t for p, t in render(values).items() if p.endswith("NOTES.txt"))


def only(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[o['metadata']['name'] for o in found]}"
    return found[0]


def kinds(objs: list[dict[str, Any]]) -> list[str]:
    return sorted(o["kind"] for o in objs)


def container(objs: list[dict[str, Any]]) -> dict[str, Any]:
    dep = only(objs, "Deployment")
    cs = dep["spec"]["template"]["spec"]["containers"]
    assert len(cs) == 1, cs
    return cs[0]


def args(objs: list[dict[str, Any]]) -> dict[str, str]:
    """The container's --flag=value arguments as a dict (flags without a value map to '')."""
    out: dict[str, str] = {}
    for a in container(objs)["args"]:
        assert a.startswith("--"), a
        flag, _, value = a[2:].partition("=")
        assert flag not in out, f"--{flag} given twice"
        out[flag] = value
    return out


def controller_flags() -> dict[str, str]:
    """Every long flag of kiln-controller and its environment variable, read from config.rs
    (clap derives `--some-field` from `some_field`)."""
    src = (ROOT / "controller/kiln-controller/src/config.rs").read_text()
    flags = {}
    for attr, field in re.findall(r"#\[arg\((long[^\]]*)\)\]\s*pub (\w+):", src):
        env = re.search(r'env = "(\w+)"', attr)
        flags[field.replace("_", "-")] = env.group(1) if env else ""
    assert len(flags) >= 15, f"could not read the flags from config.rs: {flags}"
    return flags


# ---- a tiny runner: plain python, no pytest -------------------------------------------------

_TESTS: list[tuple[str, Callable[[], None]]] = []


def test(fn: Callable[[], None]) -> Callable[[], None]:
    _TESTS.append((f"{fn.__module__}.{fn.__name__}", fn))
    return fn


def run(selected: list[str]) -> int:
    passed = failed = 0
    for name, fn in _TESTS:
        if selected and not any(s in name for s in selected):
            continue
        try:
            fn()
        except Exception:  # noqa: BLE001 - every failure is reported, none stops the run
            failed += 1
            print(f"FAIL {name}", flush=True)
            traceback.print_exc(file=sys.stdout)
        else:
            passed += 1
            print(f"ok   {name}", flush=True)
    print(f"chart: {passed} passed, {failed} failed", flush=True)
    if passed + failed == 0:
        print("no chart test ran", flush=True)
        return 1
    return 1 if failed else 0
