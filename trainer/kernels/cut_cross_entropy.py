"""`cut_cross_entropy: true`: the causal-LM loss through Apple's cut-cross-entropy kernel.

The package on the index ships the kernel (`linear_cross_entropy(hidden, weight, labels)`)
but not the transformers patches Axolotl's plugin uses, so ft patches the model itself:
in training, with labels, the decoder's hidden states go straight into the kernel with the
lm_head weight and the [tokens x vocab] logits are never stored. Everything else
(generation, evaluation without labels) runs the model's own forward.

Only plain heads qualify: a bias-free `lm_head` Linear and no logit soft-capping or
scaling (those change the function the kernel would have to compute).
"""

from __future__ import annotations

from types import MethodType

from trainer.torch_free.errors import UserError

IGNORE_INDEX = -100
# Config attributes that put something between lm_head and the loss.
_HEAD_EXTRAS = ("final_logit_softcapping", "logit_scale", "logits_scaling")


def patch_model(model) -> None:
    head = getattr(model, "lm_head", None)
    inner = getattr(model, getattr(model, "base_model_prefix", "model"), None)
    extras = [a for a in _HEAD_EXTRAS if getattr(model.config, a, None) not in (None, 1, 1.0)]
    if head is None or inner is None or getattr(head, "bias", None) is not None or extras:
        raise UserError(f"`cut_cross_entropy` cannot handle the head of {type(model).__name__}"
                        f"{' (' + ', '.join(extras) + ')' if extras else ''}; remove the key")
    if getattr(model.config, "output_router_logits", False):
        # Its loss is the cross-entropy alone: the router's load-balancing term would go.
        raise UserError("`cut_cross_entropy` computes the cross-entropy alone and would drop "
                        "the router load-balancing loss this MoE model's config asks for "
                        "(`output_router_logits`); remove one of the two")
    original = model.forward

    def forward(self, input_ids=None, labels=None, **kwargs):
        if not (self.training and labels is not None):
            return original(input_ids=input_ids, labels=labels, **kwargs)
        return _cce_loss(self, inner, input_ids, labels, kwargs)

    model.forward = MethodType(forward, model)


def _cce_loss(model, inner, input_ids, labels, kwargs):
    from cut_cross_entropy import linear_cross_entropy
    from transformers.modeling_outputs import CausalLMOutputWithPast

    items = kwargs.pop("num_items_in_batch", None)
    kwargs.pop("logits_to_keep", None)
    out = inner(input_ids=input_ids, **kwargs)
    hidden = out.last_hidden_state
    # A QLoRA model keeps lm_head in fp32; the kernel wants one dtype (the matmul's, bf16).
    weight = model.lm_head.weight.to(hidden.dtype)
    loss = linear_cross_entropy(hidden, weight, labels.to(hidden.device), shift=True,
                                ignore_index=IGNORE_INDEX,
                                reduction="sum" if items is not None else "mean")
    if items is not None:  # the Trainer's token count across accumulation steps
        loss = loss / items
    return CausalLMOutputWithPast(loss=loss, logits=None, past_key_values=None)
