"""`weights` variables: a local model's LoRA adapter, trained against its component's LRF.

adapter.py    an adapter directory (peft files + llama.cpp GGUF + meta): load, save, check
gguf_lora.py  a peft LoRA as a llama.cpp LoRA GGUF (serving applies it to the quantized base)
task.py       the component's real prompts and its LRF as the reward of a completion
methods.py    the training methods through TRL: dpo (LRF-ranked samples), grpo
kl.py         KL(trained || start) measured on the training prompts

The update step that uses them is optimas_cli/methods/optimas/updaters/weights.py; serving is the LM
layer's (LMRequest.adapter, optimas_cli/lm/local.py).
"""
