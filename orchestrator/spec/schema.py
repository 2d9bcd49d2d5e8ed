"""The spec's JSON Schema: training keys at the top level plus `launch:`."""

from __future__ import annotations

from typing import Any

from orchestrator.spec.launch_schema import launch_model
from trainer.torch_free.training import TrainingConfig


def spec_json_schema() -> dict[str, Any]:
    schema = TrainingConfig.model_json_schema()
    launch = launch_model().model_json_schema()
    defs = schema.setdefault("$defs", {})
    defs.update(launch.pop("$defs", {}))
    defs["LaunchSpec"] = launch
    schema["properties"]["launch"] = {"$ref": "#/$defs/LaunchSpec"}
    schema["title"] = "ft spec"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
