"""Child process run with a backend's venv python (NOT ours): parse launch files.

Usage: python _validate_in_venv.py {dstack|skypilot|skypilot-server} < {"label": "yaml text", ...}
Prints {"label": {"error": str|None, "parsed": dict|None}, ...} as JSON on stdout.
Only the stdlib, pyyaml and the backend may be imported here.
"""

import json
import sys


def _parse_dstack(config: dict) -> dict:
    from dstack._internal.core.models.configurations import parse_run_configuration

    conf = parse_run_configuration(config)
    # dstack 0.22.5 models are pydantic v2; keep a fallback for older v1-based releases.
    if hasattr(conf, "model_dump"):
        return conf.model_dump(mode="json")
    return json.loads(conf.json())


def _parse_skypilot(config: dict) -> dict:
    import sky

    task = sky.Task.from_yaml_config(config)
    # A YAML task has one set of resources unless it uses any_of/ordered.
    resources = [
        {
            "accelerators": r.accelerators,  # {"H100": 8} or None
            "use_spot": r.use_spot,
            "disk_size": r.disk_size,
            "cloud": str(r.cloud) if r.cloud is not None else None,
            "region": r.region,
            "zone": r.zone,
            "instance_type": r.instance_type,
            "image_id": r.image_id,
            "network_tier": r.network_tier.value if r.network_tier is not None else None,
            "config_overrides": r.cluster_config_overrides or None,
        }
        for r in task.resources
    ]
    # Dict-form `NAME: value` is an inline secret (the value is in the file!);
    # `NAME: null` is a managed reference resolved at launch (`sky launch --secret NAME`).
    inline = sorted(task.secrets)
    managed = sorted(ref.name for ref in task.managed_secret_refs)
    return {
        "name": task.name,
        "num_nodes": task.num_nodes,
        "envs": dict(task.envs),
        "secrets": sorted(set(inline) | set(managed)),
        "inline_secrets": inline,
        "managed_secrets": managed,
        "setup": task.setup,
        "run": task.run if isinstance(task.run, str) or task.run is None else repr(task.run),
        "workdir": task.workdir,
        "file_mounts": dict(task.file_mounts or {}),
        "storage_mounts": sorted(task.storage_mounts or {}),
        "storage": {path: _storage(store) for path, store in (task.storage_mounts or {}).items()},
        "volumes": dict(task.volumes or {}),
        "resources": resources,
    }


def _parse_skypilot_as_server(config: dict) -> dict:
    """As SkyPilot's API server parses a submitted task: strict about `config:` keys (a
    client lets unknown ones through for the server to judge; sky/utils/schemas.py
    _allow_additional_properties), where only OVERRIDEABLE_CONFIG_KEYS_IN_TASK may appear."""
    import os

    from sky.skylet import constants

    os.environ[constants.ENV_VAR_IS_SKYPILOT_SERVER] = "1"
    from sky.server import plugins

    plugins._plugins_loaded = True  # what load_plugins() sets when no plugin is configured
    return _parse_skypilot(config)


def _storage(store) -> dict:
    """A bucket mount as SkyPilot holds it, and what its own source check (run when the
    launch constructs the storage, not at parse time) says of it."""
    from sky.data.storage import Storage

    try:
        Storage._validate_source(store.source, store.mode, False)
        error = None
    except Exception as exc:  # its refusal, as the launch would print it
        error = f"{type(exc).__name__}: {exc}"
    return {"source": store.source, "mode": store.mode.value, "source_error": error}


def main() -> int:
    backend = sys.argv[1]
    texts = json.load(sys.stdin)
    # Libraries may log or print on import/parse; keep our stdout for the JSON result only.
    out, sys.stdout = sys.stdout, sys.stderr
    import yaml

    parse = {"dstack": _parse_dstack, "skypilot": _parse_skypilot,
             "skypilot-server": _parse_skypilot_as_server}[backend]
    results = {}
    for label, text in texts.items():
        try:
            parsed = parse(yaml.safe_load(text))
            results[label] = {"error": None, "parsed": json.loads(json.dumps(parsed, default=str))}
        except Exception as exc:  # any rejection (YAML, schema, value) is a result, not a crash
            results[label] = {"error": f"{type(exc).__name__}: {exc}", "parsed": None}
    json.dump(results, out)
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
