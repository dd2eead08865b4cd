"""The shipped deploy/ files: every ``driftloop ...`` command they run parses against the real
CLI, every config key they set exists, every secret the config names is provided, and the
Kubernetes objects fit together."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from driftloop.cli import app
from driftloop.config import ENV_PREFIX, config_keys, parse_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
KEYS = set(config_keys())
NOT_OVERRIDES = {"DRIFTLOOP_CONFIG", "DRIFTLOOP_SECRETS_FILE"}
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}")


def documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def k8s_objects() -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted((DEPLOY / "k8s").glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in documents(path)
    ]


def compose() -> dict[str, Any]:
    [document] = documents(DEPLOY / "docker-compose.yml")
    assert isinstance(document, dict)
    return document


def driftloop_argvs(command: list[str]) -> Iterator[list[str]]:
    """The ``driftloop`` invocations of a container command (shell ``-c`` scripts included)."""
    if command[:2] == ["sh", "-c"]:
        words = shlex.split(command[2])
        segment: list[str] = []
        for word in [*words, "&&"]:
            if word in {"&&", "||", ";"}:
                if segment and segment[0] == "driftloop":
                    yield segment
                segment = []
            else:
                segment.append(word)
    elif command and command[0] == "driftloop":
        yield command


def containers() -> Iterator[tuple[str, dict[str, Any]]]:
    for obj in k8s_objects():
        spec = obj.get("spec", {})
        pod = spec.get("template", {}).get("spec", {})
        for container in pod.get("containers", []):
            yield f"k8s {obj['kind']}/{obj['metadata']['name']}", container


def every_command() -> list[tuple[str, list[str]]]:
    found: list[tuple[str, list[str]]] = []
    for name, service in compose()["services"].items():
        for key in ("entrypoint", "command"):
            if isinstance(service.get(key), list):
                found.extend((f"compose {name}", argv) for argv in driftloop_argvs(service[key]))
    for where, container in containers():
        argv = [*container.get("command", []), *container.get("args", [])]
        found.extend((where, driftloop) for driftloop in driftloop_argvs(argv))
    cmd = re.search(r"^CMD (\[.*\])$", (DEPLOY / "Dockerfile").read_text(), re.M)
    assert cmd is not None
    found.extend(("Dockerfile", argv) for argv in driftloop_argvs(yaml.safe_load(cmd.group(1))))
    return found


def test_every_driftloop_command_exists_and_its_options_parse() -> None:
    commands = every_command()
    names = {" ".join(argv[:2]) for _, argv in commands}
    assert {
        "driftloop serve",
        "driftloop up",
        "driftloop worker",
        "driftloop ingest",
        "driftloop train",
        "driftloop models",
    } <= names
    for where, argv in commands:
        command: Any = typer.main.get_command(app)
        rest = argv[1:]
        path = ["driftloop"]
        while hasattr(command, "commands"):
            assert rest, f"{where}: {' '.join(argv)} names no subcommand"
            assert rest[0] in command.commands, f"{where}: no command '{' '.join(path)} {rest[0]}'"
            path.append(rest[0])
            command, rest = command.commands[rest[0]], rest[1:]
        # parses options and arguments exactly as the CLI would, without running anything
        command.make_context(" ".join(path), list(rest))


def key_paths(node: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in node.items():
        path = f"{prefix}{key}"
        if prefix in {"models.", "notifiers."}:
            path = f"{prefix}*"
            yield from key_paths(value, path + ".")
            continue
        yield path
        if isinstance(value, dict) and any(k.startswith(path + ".") for k in KEYS):
            yield from key_paths(value, path + ".")
        elif isinstance(value, list) and any(k.startswith(path + "[].") for k in KEYS):
            for item in value:
                yield from key_paths(item, path + "[].")


def config_texts() -> dict[str, str]:
    [configmap] = [o for o in k8s_objects() if o["kind"] == "ConfigMap"]
    return {
        "deploy/driftloop.yaml": (DEPLOY / "driftloop.yaml").read_text(),
        "k8s ConfigMap": configmap["data"]["driftloop.yaml"],
    }


@pytest.mark.parametrize("source", ["deploy/driftloop.yaml", "k8s ConfigMap"])
def test_the_shipped_config_is_valid_and_uses_only_known_keys(source: str) -> None:
    text = config_texts()[source]
    unknown = sorted(set(key_paths(yaml.safe_load(text))) - KEYS)
    assert not unknown, f"{source}: keys driftloop does not have: {unknown}"
    secrets = set(_ENV_REFERENCE.findall(text))
    config = parse_config(text, source=source, environ={name: "x" for name in secrets})
    assert config.transport.startswith("kafka://")
    assert config.store.startswith("postgresql+psycopg://")
    assert config.storage.startswith("s3://")
    assert not [name for name in secrets if name.startswith(ENV_PREFIX)], (
        "DRIFTLOOP_* variables are config overrides, not secrets"
    )


def overrides(environment: Iterable[str]) -> list[str]:
    return [
        name for name in environment if name.startswith(ENV_PREFIX) and name not in NOT_OVERRIDES
    ]


def override_key(name: str) -> str:
    return ".".join(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))


def test_compose_provides_what_the_config_needs() -> None:
    document = compose()
    secrets = set(_ENV_REFERENCE.findall(config_texts()["deploy/driftloop.yaml"]))
    roles = {
        name: s for name, s in document["services"].items() if s.get("image") == "driftloop:local"
    }
    assert {"serving", "control", "worker", "ingest", "bootstrap"} <= set(roles)
    for name, service in roles.items():
        environment = service["environment"]
        assert secrets <= set(environment), f"{name} lacks {secrets - set(environment)}"
        assert environment["DRIFTLOOP_CONFIG"] == "/var/lib/driftloop/driftloop.yaml"
        assert "./driftloop.yaml:/var/lib/driftloop/driftloop.yaml:ro" in service["volumes"]
        for variable in overrides(environment):
            assert override_key(variable) in KEYS, f"compose {name}: {variable}"
    for service in document["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), f"compose mounts a missing {source}"
    build = roles["serving"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).is_file()
    hook = document["services"]["alertmanager"]["secrets"][0]["target"]
    [receiver] = [
        r
        for r in documents(DEPLOY / "alertmanager.yml")[0]["receivers"]
        if r["name"] == "driftloop"
    ]
    assert (
        receiver["webhook_configs"][0]["http_config"]["authorization"]["credentials_file"] == hook
    )


def test_kubernetes_objects_fit_together() -> None:
    objects = k8s_objects()
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert {
        ("ConfigMap", "driftloop-config"),
        ("Secret", "driftloop-secrets"),
        ("Deployment", "driftloop-serving"),
        ("Deployment", "driftloop-worker"),
        ("Deployment", "driftloop-ingest"),
    } <= kinds
    [kustomization] = documents(DEPLOY / "k8s" / "kustomization.yaml")
    assert sorted(kustomization["resources"]) == sorted(
        p.name for p in (DEPLOY / "k8s").glob("*.yaml") if p.name != "kustomization.yaml"
    )
    [secret] = [o for o in objects if o["kind"] == "Secret"]
    provided = set(secret["stringData"])
    needed = set(_ENV_REFERENCE.findall(config_texts()["k8s ConfigMap"]))
    for where, container in containers():
        env = {item["name"] for item in container.get("env", [])}
        assert [ref["secretRef"]["name"] for ref in container["envFrom"]] == ["driftloop-secrets"]
        assert needed <= provided | env, f"{where} lacks {needed - provided - env}"
        for variable in overrides(env):
            assert override_key(variable) in KEYS, f"{where}: {variable}"
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        config_path = next(e["value"] for e in container["env"] if e["name"] == "DRIFTLOOP_CONFIG")
        assert mounts[config_path]["subPath"] == "driftloop.yaml"
    for obj in objects:
        if obj["kind"] != "Deployment":
            continue
        spec = obj["spec"]
        labels = spec["template"]["metadata"]["labels"]
        assert spec["selector"]["matchLabels"].items() <= labels.items(), obj["metadata"]
        volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
        assert volumes["config"]["configMap"]["name"] == "driftloop-config"


# --- against the real schemas -----------------------------------------------------------

KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
"""The oldest and newest Kubernetes releases the manifests are checked against (the newest is
the newest schema kubernetes-validate ships)."""


def kustomize_build() -> list[dict[str, Any]]:
    """What ``kustomize build deploy/k8s`` renders, for the features the kustomization uses
    (its resources, in order); another feature fails here rather than go unchecked."""
    [kustomization] = documents(DEPLOY / "k8s" / "kustomization.yaml")
    used = set(kustomization) - {"apiVersion", "kind", "resources"}
    assert not used, f"teach kustomize_build {sorted(used)} before the kustomization uses it"
    return [doc for name in kustomization["resources"] for doc in documents(DEPLOY / "k8s" / name)]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_is_valid_for_kubernetes(version: str) -> None:
    import kubernetes_validate

    objects = kustomize_build()
    assert objects
    for obj in objects:
        # strict: an unknown field (a typo) fails, as the API server's strict field
        # validation would
        kubernetes_validate.validate(obj, version, strict=True)


def test_a_wrong_manifest_fails_the_schema() -> None:
    import kubernetes_validate

    [control] = [
        o
        for o in kustomize_build()
        if o["kind"] == "Deployment" and o["metadata"]["name"] == "driftloop-control"
    ]
    control["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(control, KUBERNETES_VERSIONS[-1], strict=True)


def test_the_compose_file_is_valid_for_the_compose_specification() -> None:
    import json
    from importlib.resources import files

    import jsonschema

    schema = json.loads(
        files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    )
    jsonschema.validate(compose(), schema)
    broken = compose()
    broken["services"]["serving"]["portz"] = ["8000:8000"]  # a typo of ports
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_the_control_plane_has_probes_resources_a_budget_and_a_network_policy() -> None:
    objects = kustomize_build()
    for obj in objects:
        if obj["kind"] != "Deployment":
            continue
        for container in obj["spec"]["template"]["spec"]["containers"]:
            name = obj["metadata"]["name"]
            assert container.get("resources", {}).get("requests"), f"{name} has no requests"
            if any(p.get("name") == "http" for p in container.get("ports", [])):
                assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
                assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
    control_labels = {
        "app.kubernetes.io/name": "driftloop",
        "app.kubernetes.io/component": "control",
    }
    [budget] = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    assert budget["spec"]["selector"]["matchLabels"] == control_labels
    [policy] = [o for o in objects if o["kind"] == "NetworkPolicy"]
    assert policy["spec"]["podSelector"]["matchLabels"] == control_labels
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]] == [8000]
    egress = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert {53, 5432, 9092, 443} <= egress


def test_the_control_plane_runs_two_replicas_and_a_drain_keeps_one() -> None:
    """Failover (docs/reliability.md): two control replicas, one leading through the lease; the
    budget lets a drain take one at a time, never both."""
    objects = kustomize_build()
    [control] = [
        o
        for o in objects
        if o["kind"] == "Deployment" and o["metadata"]["name"] == "driftloop-control"
    ]
    assert control["spec"]["replicas"] == 2
    assert control["spec"]["strategy"]["type"] == "RollingUpdate"
    [budget] = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    assert budget["spec"] == {**budget["spec"], "minAvailable": 1}
    assert "maxUnavailable" not in budget["spec"]


def test_the_image_builds_with_existing_extras_and_has_a_transformers_variant() -> None:
    import tomllib

    extras = set(
        tomllib.loads((DEPLOY.parent / "pyproject.toml").read_text())["project"][
            "optional-dependencies"
        ]
    )
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    [default] = re.findall(r"^ARG EXTRAS=(\S+)$", dockerfile, re.MULTILINE)
    assert '".[${EXTRAS}]"' in dockerfile
    assert "-c constraints.txt" in dockerfile
    assert set(default.split(",")) <= extras
    [variant] = re.findall(r"--build-arg EXTRAS=(\S+)", dockerfile)
    assert set(variant.split(",")) == set(default.split(",")) | {"transformers"}
    args = compose()["x-driftloop"]["build"]["args"]
    assert args["EXTRAS"] == "${DRIFTLOOP_EXTRAS:-" + default + "}"
