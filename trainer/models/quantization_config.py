"""The `quantization_config` for a checkpoint that ships quantized: transformers' Mxfp4Config
from `model_quantization_config` (a gpt-oss MXFP4 checkpoint dequantized while loading;
trainer/torch_free/prequantized.py has the rules). bitsandbytes stays in load.py.
"""

from __future__ import annotations

import logging
from typing import Any

from trainer.models.source import load_config
from trainer.torch_free.prequantized import mxfp4_arguments
from trainer.torch_free.training import TrainingConfig

log = logging.getLogger("ft.model")


def prequantized_config(cfg: TrainingConfig) -> Any | None:
    """Mxfp4Config(dequantize=True, ...) for `model_quantization_config: Mxfp4Config`.

    transformers dequantizes into the dtype the model loads in (bf16 on a GPU, fp32 on the
    CPU), on any device: the MXFP4 kernels are needed only to run the weights quantized.
    """
    arguments = mxfp4_arguments(cfg)
    if arguments is None and _is_mxfp4_checkpoint(cfg):
        # Kept quantized it could not train (and on a GPU with the `kernels` package
        # transformers would keep it so): say what happens instead of failing later.
        log.warning("%s is an MXFP4 checkpoint: its experts are dequantized while loading "
                    "(`model_quantization_config: Mxfp4Config` with "
                    "`model_quantization_config_kwargs: {dequantize: true}` says so)",
                    cfg.base_model)
        arguments = {"dequantize": True}
    if arguments is None:
        return None
    from transformers import Mxfp4Config

    log.info("MXFP4 checkpoint: experts dequantized while loading (%s)", arguments)
    return Mxfp4Config(**arguments)



def _is_mxfp4_checkpoint(cfg: TrainingConfig) -> bool:
    found = getattr(load_config(cfg), "quantization_config", None)
    method = found.get("quant_method") if isinstance(found, dict) else \
        getattr(found, "quant_method", None)
    return str(getattr(method, "value", method)) == "mxfp4"
