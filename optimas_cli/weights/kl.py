"""KL(trained || start) of an adapter update, measured on the training prompts.

Both trainers keep the starting adapter as a frozen copy named "ref" (TRL does this
when it is given a peft model whose adapter is already trained, and the reference of
its KL term is that copy, not the base model). The estimate samples completions from
the trained adapter at temperature 1 (no top-k/top-p: the policy itself) and averages
log p_trained(y|x) - log p_start(y|x) over them: nats per completion, and per token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

REF = "ref"


def _completion_logps(model: Any, ids: Any, prompt_len: int) -> Any:
    import torch

    logits = model(input_ids=ids).logits[:, prompt_len - 1:-1].float()
    return torch.log_softmax(logits, dim=-1).gather(-1, ids[:, prompt_len:, None]).squeeze(-1)


def measure_kl(model: Any, tokenizer: Any, prompts: Sequence[str], samples: int,
               max_new_tokens: int, stop_ids: Sequence[int], seed: int = 0) -> dict[str, Any]:
    """{"kl": nats per completion, "kl_per_token", "completions", "tokens"} of the
    active ("default") adapter against "ref"; kl 0 when there is no "ref" (nothing trained)."""
    import torch

    if REF not in model.peft_config:
        return {"kl": 0.0, "kl_per_token": 0.0, "completions": 0, "tokens": 0}
    torch.manual_seed(seed)
    eos = sorted({tokenizer.eos_token_id, *stop_ids})
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    was_training = model.training
    model.eval()
    total, tokens, n = 0.0, 0, 0
    try:
        with torch.no_grad():
            for prompt in prompts:
                enc = tokenizer([prompt] * samples, return_tensors="pt", add_special_tokens=False)
                prompt_len = enc["input_ids"].shape[1]
                out = model.generate(**enc, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                                     max_new_tokens=max_new_tokens, eos_token_id=eos,
                                     pad_token_id=pad)
                if out.shape[1] == prompt_len:
                    continue
                completion = out[:, prompt_len:]
                # each completion runs up to and including its first end token
                ended = torch.isin(completion, torch.tensor(eos)).int()
                mask = (ended.cumsum(1) - ended) == 0
                new = _completion_logps(model, out, prompt_len)
                model.set_adapter(REF)
                try:
                    ref = _completion_logps(model, out, prompt_len)
                finally:
                    model.set_adapter("default")
                total += float(((new - ref) * mask).sum())
                tokens += int(mask.sum())
                n += completion.shape[0]
    finally:
        model.train(was_training)
    return {"kl": total / n if n else 0.0, "kl_per_token": total / tokens if tokens else 0.0,
            "completions": n, "tokens": tokens}
