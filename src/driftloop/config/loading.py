"""Reading ``driftloop.yaml``: ``${VAR}`` / ``${VAR:-default}`` and ``${VAR}_FILE`` secrets, the
``DRIFTLOOP_SECRETS_FILE``, ``DRIFTLOOP_*`` overrides, errors naming file and key path (secrets
masked), and the schema and key list the docs are checked against."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from driftloop.config.notifiers import (
    NOTIFIER_TYPES,
    GithubDispatchNotifierConfig,
    JiraNotifierConfig,
    LogNotifierConfig,
    RetrainNotifierConfig,
    SlackNotifierConfig,
    WebhookNotifierConfig,
)
from driftloop.config.root import Config
from driftloop.config.serving import ModelConfig
from driftloop.config.values import Threshold
from driftloop.errors import ConfigError
from driftloop.redaction import is_secret_key, mask_url

CONFIG_FILENAME = "driftloop.yaml"
ENV_PREFIX = "DRIFTLOOP_"
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _substitute(node: Any, path: str, environ: Mapping[str, str], source: str) -> Any:
    if isinstance(node, dict):
        return {
            k: _substitute(v, f"{path}.{k}" if path else str(k), environ, source)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_substitute(v, f"{path}[{i}]", environ, source) for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if f"{name}_FILE" in environ:
            return _read_file_variable(name, environ, source, path)
        if default is not None:
            return default
        raise ConfigError(
            f"{source}: {path}: environment variable {name} is not set "
            f"(set it or {name}_FILE, put it in the secrets file, or write ${{{name}:-default}})"
        )

    return _ENV_REFERENCE.sub(replace, node)


def _apply_overrides(raw: dict[str, Any], environ: Mapping[str, str]) -> None:
    for key, value in sorted(environ.items()):
        if not key.startswith(ENV_PREFIX) or key in {"DRIFTLOOP_CONFIG", "DRIFTLOOP_SECRETS_FILE"}:
            continue
        parts = [p.lower() for p in key[len(ENV_PREFIX) :].split("__") if p]
        if not parts or parts[0] not in Config.model_fields or parts[0] == "base_dir":
            continue  # DRIFTLOOP_SERVICES_DIR, DRIFTLOOP_API_KEY ... are not config overrides
        node = raw
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        parsed = yaml.safe_load(value) if value else value
        node[parts[-1]] = parsed


def _read_secrets_file(path: Path) -> dict[str, str]:
    """A ``.env`` file, parsed by python-dotenv (quotes, ``export``, multi-line values,
    ``#`` comments); ``${VAR}`` inside it is not expanded."""
    from dotenv import dotenv_values

    if not path.is_file():
        raise ConfigError(f"DRIFTLOOP_SECRETS_FILE: {path}: no such file")
    secrets: dict[str, str] = {}
    for key, value in dotenv_values(path, interpolate=False).items():
        if value is None:
            raise ConfigError(f"{path}: {key}: expected KEY=value")
        secrets[key] = value
    return secrets


def _read_file_variable(name: str, environ: Mapping[str, str], source: str, path: str) -> str:
    """The secret ``${NAME}`` from the file ``$NAME_FILE`` names (Kubernetes and Docker
    secrets), without its final newline."""
    file = Path(environ[f"{name}_FILE"])
    try:
        return file.read_text().removesuffix("\n")
    except OSError as exc:
        raise ConfigError(
            f"{source}: {path}: {name}_FILE: cannot read {file}: {exc.strerror}"
        ) from None


def _format_validation_error(source: str, error: ValidationError) -> str:
    lines = [f"{source}: invalid configuration"]
    for item in error.errors():
        parts = [str(p) for p in item["loc"] if p != "function-after"]
        if len(parts) > 2 and parts[0] == "notifiers" and parts[2] in NOTIFIER_TYPES | {"plugin"}:
            del parts[2]  # the discriminator pydantic adds: notifiers.x.slack.webhook_url
        location = ".".join(parts)
        message = item["msg"].removeprefix("Value error, ")
        given = item.get("input")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        shown = "" if isinstance(given, dict | list) or given is None else f" (got {given!r})"
        if parts and is_secret_key(parts[-1]):
            shown = ""  # an error message must not show the secret it refuses
        shown = mask_url(shown)
        lines.append(f"  {location or '<root>'}: {message}{shown}")
    return "\n".join(lines)


_FAST_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader where PyYAML has it: the same documents, ten times faster than the
pure-Python one (a CLI command reads the whole file on every start)."""


def _parse_yaml(text: str, source: str) -> Any:
    """The YAML document in ``text``; an error is reported by the pure-Python loader, whose
    message shows the offending line with a caret (libyaml's shows the position only)."""
    try:
        return yaml.load(text, Loader=_FAST_LOADER)  # noqa: S506  (a safe loader)
    except yaml.YAMLError:
        pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc


def parse_config(
    text: str,
    *,
    source: str = CONFIG_FILENAME,
    base_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Parse config text; ``environ`` defaults to the process environment."""
    env = dict(os.environ if environ is None else environ)
    raw = _parse_yaml(text, source) if text.strip() else {}
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of keys at the top level")
    raw = _substitute(raw, "", env, source)
    _apply_overrides(raw, env)
    raw["base_dir"] = (base_dir or Path.cwd()).resolve()
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(source, exc)) from None


def find_config(start: Path | None = None) -> Path | None:
    """``$DRIFTLOOP_CONFIG``, else ``driftloop.yaml`` in ``start`` or a parent directory."""
    explicit = os.environ.get("DRIFTLOOP_CONFIG")
    if explicit:
        return Path(explicit)
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / CONFIG_FILENAME
        if candidate.is_file():
            return candidate
    return None


def load_config(path: Path | str | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Load ``driftloop.yaml`` (found as in :func:`find_config` when no path is given).

    Secrets may also come from a ``KEY=value`` file named by ``$DRIFTLOOP_SECRETS_FILE``;
    the real environment wins over it.
    """
    env = dict(os.environ if environ is None else environ)
    config_path = Path(path) if path is not None else find_config()
    if config_path is None:
        raise ConfigError(
            f"no {CONFIG_FILENAME} here or in a parent directory; run 'driftloop init' first"
        )
    if not config_path.is_file():
        raise ConfigError(f"{config_path}: no such config file")
    secrets_file = env.get("DRIFTLOOP_SECRETS_FILE")
    if secrets_file:
        env = {**_read_secrets_file(Path(secrets_file)), **env}
    return parse_config(
        config_path.read_text(),
        source=str(config_path),
        base_dir=config_path.resolve().parent,
        environ=env,
    )


def config_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``driftloop.yaml``, for editors and CI checks."""
    schema = Config.model_json_schema()
    for name, field in Config.model_fields.items():
        if field.exclude:
            schema["properties"].pop(name, None)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "driftloop.yaml"
    return schema


def config_keys() -> list[str]:
    """Every documented config key path (``serving.port``, ``monitors[].below.warning`` ...)."""
    keys: list[str] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            if field.exclude:
                continue
            path = f"{prefix}{name}"
            keys.append(path)
            for nested in _nested_models(field.annotation):
                suffix = "[]." if _is_list(field.annotation) else "."
                walk(nested, path + suffix)

    walk(Config, "")
    for notifier in (
        SlackNotifierConfig,
        JiraNotifierConfig,
        WebhookNotifierConfig,
        GithubDispatchNotifierConfig,
        LogNotifierConfig,
        RetrainNotifierConfig,
    ):
        walk(notifier, "notifiers.*.")
    walk(ModelConfig, "models.*.")
    return sorted(set(keys))


def _is_list(annotation: object) -> bool:
    return getattr(annotation, "__origin__", None) is list


def _nested_models(annotation: object) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if annotation is not Threshold:
            found.append(annotation)
        return found
    origin = getattr(annotation, "__origin__", None)
    if origin is dict:
        return found
    for arg in getattr(annotation, "__args__", ()):
        found.extend(_nested_models(arg))
    return found
