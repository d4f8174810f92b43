"""`weights` variables without the embedded model: the adapter GGUF export, config checks,
cache keys of adapted requests, and loading a system.yaml that names adapters (fast).

The trained and served adapter itself is in tests/test_weights_train.py (slow)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from optimas_cli.components.llm import LLMComponent
from optimas_cli.errors import ConfigError
from optimas_cli.graph import check_graph
from optimas_cli.lm.base import LMError, LMRequest
from optimas_cli.schema import ComponentConfig, SystemConfig, VariableConfig
from optimas_cli.weights.adapter import ADAPTER_GGUF, META, AdapterError, check_adapter

SMOL = "local/smollm2-135m-instruct"


def tiny_llama(model_type: str = "llama"):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    kw = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2)
    base = (LlamaForCausalLM(LlamaConfig(**kw)) if model_type == "llama"
            else Qwen2ForCausalLM(Qwen2Config(**kw)))
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, task_type="CAUSAL_LM",
                                            target_modules=["q_proj", "k_proj", "v_proj"]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_()
    return model


def hf_delta(model, layer: int, proj: str) -> np.ndarray:
    m = model.base_model.model.model.layers[layer].self_attn.__getattr__(proj)
    a, b = m.lora_A["default"].weight, m.lora_B["default"].weight
    return (b @ a).detach().numpy()


@pytest.mark.parametrize("model_type", ["llama", "qwen2"])
def test_gguf_export_names_shapes_alpha_and_undoes_transformers_permutation(tmp_path, model_type):
    import gguf
    from peft import get_peft_model_state_dict
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    from optimas_cli.weights.gguf_lora import write_lora_gguf

    model = tiny_llama(model_type)
    config = model.get_base_model().config
    path = write_lora_gguf(tmp_path / "a.gguf", get_peft_model_state_dict(model), config, 8.0)
    reader = gguf.GGUFReader(str(path))
    fields = {f.name: f for f in reader.fields.values()}
    assert bytes(fields["general.type"].parts[-1]).decode() == "adapter"
    assert bytes(fields["adapter.type"].parts[-1]).decode() == "lora"
    assert float(fields["adapter.lora.alpha"].parts[-1][0]) == 8.0
    tensors = {t.name: np.array(t.data).reshape(list(reversed(t.shape.tolist())))
               for t in reader.tensors}
    assert sorted(tensors) == sorted(f"blk.{i}.attn_{p}.weight.lora_{ab}"
                                     for i in range(2) for p in "qkv" for ab in "ab")
    # shapes as llama.cpp checks them: a (r x in), b (out x r)
    assert tensors["blk.1.attn_k.weight.lora_a"].shape == (4, 32)
    assert tensors["blk.1.attn_k.weight.lora_b"].shape == (16, 4)
    # transformers reads a GGUF's q/k rows through this inverse permutation (llama only);
    # the exported delta must come back as the trained one
    undo = LlamaTensorProcessor(config={"num_attention_heads": 4, "num_key_value_heads": 2})
    for proj, short in (("q_proj", "q"), ("k_proj", "k"), ("v_proj", "v")):
        delta = tensors[f"blk.1.attn_{short}.weight.lora_b"] @ tensors[f"blk.1.attn_{short}.weight.lora_a"]
        if model_type == "llama":
            delta = undo.process(delta, f"blk.1.attn_{short}.weight").weights
        np.testing.assert_allclose(delta, hf_delta(model, 1, proj), rtol=1e-5, atol=1e-5)


def test_weights_variable_config_checks():
    var = VariableConfig(type="weights")
    assert var.value is None and var.lora.r == 8 and var.lora.target_modules == ["q_proj", "v_proj"]
    with pytest.raises(ValueError, match="no `choices`"):
        VariableConfig(type="weights", choices=["a"])
    with pytest.raises(ValueError, match="adapter directory or null"):
        VariableConfig(type="weights", value=3)
    with pytest.raises(ValueError, match="belong to weights variables"):
        VariableConfig(type="hyperparameter", value=1, choices=[1], lora={"r": 4})


def _system(variables: dict, model: str = SMOL) -> SystemConfig:
    return SystemConfig(name="s", inputs=["q"], final_output="a", loader="x:y", metric="x:y",
                        components={"gen": {"kind": "llm", "description": "d", "inputs": ["q"],
                                            "outputs": ["a"], "params": {"model": model},
                                            "variables": variables}})


def test_weights_and_model_variables_are_not_combined():
    cfg = _system({"w": {"type": "weights"},
                   "m": {"type": "model", "value": SMOL, "choices": [SMOL]}})
    assert any("cannot be combined" in msg for _, msg in check_graph(cfg))
    assert check_graph(_system({"w": {"type": "weights"}})) == []


def test_weights_need_a_local_model():
    problems = check_graph(_system({"w": {"type": "weights"}}, model="openai/gpt-4o-mini"))
    assert any("needs a local/... model" in msg for _, msg in problems)
    cfg = ComponentConfig(kind="llm", description="d", inputs=["q"], outputs=["a"],
                          params={"model": "openai/gpt-4o-mini"},
                          variables={"w": {"type": "weights"}})
    with pytest.raises(ValueError, match="needs a local/... model"):
        LLMComponent("gen", cfg, {})


def fake_adapter(path, base_model: str = SMOL, content: bytes = b"x"):
    path.mkdir(parents=True)
    (path / ADAPTER_GGUF).write_bytes(content)
    (path / META).write_text(json.dumps({"base_model": base_model}))
    return path


def test_adapted_request_keys_follow_the_adapter_content(tmp_path):
    plain = LMRequest(model=SMOL, prompt="p")
    assert "adapter" not in plain.canonical()  # requests without one keep their old cache keys
    a = fake_adapter(tmp_path / "a", content=b"one") / ADAPTER_GGUF
    b = fake_adapter(tmp_path / "b", content=b"one") / ADAPTER_GGUF
    c = fake_adapter(tmp_path / "c", content=b"two") / ADAPTER_GGUF
    keys = [LMRequest(model=SMOL, prompt="p", adapter=str(p)).key() for p in (a, b, c)]
    assert keys[0] == keys[1] != keys[2] and plain.key() not in keys


def test_component_sends_its_adapter_and_the_adapted_model(tmp_path):
    from optimas_cli.graph import Call

    cfg = _system({"w": {"type": "weights", "base_model": SMOL}}, model=SMOL).components["gen"]
    comp = LLMComponent("gen", cfg, {})
    adapter = fake_adapter(tmp_path / "w")
    req = comp.request({"q": "hi"}, {"w": str(adapter)}, Call(lm=None, component="gen"))
    assert req.adapter == str(adapter / ADAPTER_GGUF) and req.model == SMOL
    assert comp.request({"q": "hi"}, {"w": None}, Call(lm=None, component="gen")).adapter is None
    with pytest.raises(AdapterError, match="no adapter.gguf"):
        comp.request({"q": "hi"}, {"w": str(tmp_path)}, Call(lm=None, component="gen"))


def test_adapter_with_an_api_model_is_refused():
    from optimas_cli.lm import LMClient
    from optimas_cli.lm.config import LMConfig

    client = LMClient(LMConfig(cache={"mode": "off"}))
    with pytest.raises(LMError, match="only be applied to an embedded"):
        client.complete(LMRequest(model="openai/gpt-4o-mini", prompt="p", adapter="/x.gguf"))


def test_check_adapter_names_what_is_wrong(tmp_path):
    with pytest.raises(AdapterError, match="no optimas_adapter.json"):
        check_adapter(tmp_path, SMOL)
    other = fake_adapter(tmp_path / "o", base_model="local/gemma3-270m")
    with pytest.raises(AdapterError, match="trained on 'local/gemma3-270m'"):
        check_adapter(other, SMOL)


def test_system_yaml_with_adapters_loads_and_checks_them(tmp_path):
    from optimas_cli.graph import System, build_components
    from optimas_cli.runtime import load_state

    cfg = _system({"w": {"type": "weights"}})
    system = System(cfg, build_components(cfg, {}), lm=None)
    run = tmp_path / "run"
    adapter = fake_adapter(run / "weights" / "gen" / "iter_001")
    state_file = run / "final" / "system.yaml"
    state_file.parent.mkdir(parents=True)
    for value in (str(adapter), "weights/gen/iter_001"):  # absolute, or relative to the run
        state_file.write_text(yaml.safe_dump({"state": {"gen": {"w": value}}}))
        assert load_state(state_file, system) == {"gen": {"w": str(adapter.resolve())}}
    state_file.write_text(yaml.safe_dump({"state": {"gen": {"w": str(tmp_path / "gone")}}}))
    with pytest.raises(ConfigError) as e:
        load_state(state_file, system)
    assert str(state_file) in str(e.value) and "gen.w" in str(e.value) and "gone" in str(e.value)


def test_an_untrusted_head_trains_no_adapter_and_the_step_says_why(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from optimas_cli.methods.optimas.update import update_component
    from optimas_cli.methods.optimas.updaters import weights
    from optimas_cli.methods.optimas.updaters.common import UpdateContext
    from optimas_cli.schema import UpdateConfig

    trained = []
    monkeypatch.setattr(weights, "optimize_weights", lambda ctx, vname, out_dir=None: (
        trained.append(vname) or {"variable": vname, "type": "weights", "best": "new/adapter",
                                  "candidates": []}))
    system = SimpleNamespace(cfg=_system({"w": {"type": "weights"}}))
    state = {"gen": {"w": "old/adapter"}}
    untrusted = {"trusted": False, "reason": "3 held-out pairs of own outputs: too few"}
    for trust, why in ((untrusted, "too few"), (None, "not measured")):
        ctx = UpdateContext(system, "gen", [], None, state, UpdateConfig(), None, trust=trust)
        out = update_component(ctx, default_model=SMOL, weights_dir=tmp_path)
        (var,) = out["variables"]
        assert out["state"] == state and var["candidates"] == [] and trained == []
        assert var["held"].startswith("the local reward is not trusted: ") and why in var["held"]
    ctx = UpdateContext(system, "gen", [], None, state, UpdateConfig(), None,
                        trust={"trusted": True})
    assert update_component(ctx, default_model=SMOL, weights_dir=tmp_path)["state"] == {
        "gen": {"w": "new/adapter"}} and trained == ["w"]
