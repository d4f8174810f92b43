"""Which prompt form an llm component sends (chat or completion), per model and overridden,
and that the reply is read the same either way. Logic only (scripted LM); the same through
a real OpenAI-compatible server: tests/lm/test_server.py."""

from __future__ import annotations

import dspy
import pytest

from optimas_cli.components.llm import LLMComponent
from optimas_cli.dspy.lm import task_lm
from optimas_cli.dspy.program import SystemProgram
from optimas_cli.graph import Call
from optimas_cli.lm.config import LMConfig
from optimas_cli.lm.style import model_style
from optimas_cli.runtime import build_runtime
from optimas_cli.schema import ComponentConfig

LOCAL, API = "local/smollm2-135m-instruct", "openai/served-model"
DEMO = {"question": "Capital of France?", "answer": "Paris"}
ASK = "Respond with only the answer."


def capital(outputs=("answer",), lm_style="auto", model_choices=None, **params) -> LLMComponent:
    variables = {"prompt": {"type": "prompt", "instruction": "Name the capital city."}}
    if model_choices:
        variables["model"] = {"type": "model", "value": model_choices[0], "choices": model_choices}
    cfg = ComponentConfig(kind="llm", description="Names capitals.", inputs=["question"],
                          outputs=list(outputs), params=params, variables=variables)
    return LLMComponent("qa", cfg, {"lm_config": LMConfig(model=LOCAL, prompt_style=lm_style)})


def sent(comp: LLMComponent, values: dict, scripted_lm, reply: str = "Lima"):
    """(parsed outputs, the request) of one forward call with these variable values."""
    lm = scripted_lm(lambda r: reply)
    out = comp.forward({"question": "Capital of Peru?"},
                       {"prompt": {"instruction": "Name the capital city.", "demos": [DEMO]},
                        **values}, Call(lm=lm, component="qa"))
    return out, lm.requests[0][1]


def test_auto_gives_embedded_models_the_completion_document_of_today(scripted_lm):
    out, req = sent(capital(), {}, scripted_lm)
    assert out == {"answer": "Lima"} and not req.is_chat
    # byte for byte the document the embedded models always got (the reproduce cache's keys)
    assert req.prompt == ("Name the capital city.\n\nQuestion: Capital of France?\nAnswer: Paris"
                          "\n\nQuestion: Capital of Peru?\nAnswer:")
    assert capital(style="completion").render({"question": "Capital of Peru?"},
                                               "Name the capital city.", [DEMO]) == {
        "prompt": req.prompt}


def test_auto_gives_api_models_chat_with_demonstrations_as_turns(scripted_lm):
    comp = capital(model_choices=[API, LOCAL])
    out, req = sent(comp, {"model": API}, scripted_lm)
    assert out == {"answer": "Lima"} and req.model == API
    assert req.messages == (
        ("system", "Name the capital city."),
        ("user", f"Question: Capital of France?\n\n{ASK}"), ("assistant", "Answer: Paris"),
        ("user", f"Question: Capital of Peru?\n\n{ASK}"))
    # the same component, the model variable set to an embedded model: a document
    _, local_req = sent(comp, {"model": LOCAL}, scripted_lm)
    assert not local_req.is_chat and local_req.model == LOCAL


def test_text_completion_providers_get_documents():
    assert model_style("text-completion-openai/gpt-3.5-turbo-instruct") == "completion"
    assert model_style("hosted_vllm/Qwen/Qwen2.5-1.5B-Instruct") == "chat"
    assert model_style(LOCAL) == "completion"


def test_lm_prompt_style_overrides_the_model_and_params_style_overrides_both(scripted_lm):
    _, req = sent(capital(lm_style="chat"), {}, scripted_lm)
    assert req.is_chat and req.model == LOCAL
    _, req = sent(capital(lm_style="chat", style="completion"), {}, scripted_lm)
    assert not req.is_chat
    _, req = sent(capital(lm_style="completion", model_choices=[API]), {"model": API}, scripted_lm)
    assert not req.is_chat and req.model == API


def test_chat_without_demonstrations_is_the_request_of_today(scripted_lm):
    req = capital(style="chat").render({"question": "Q?"}, "Be brief.", [])
    assert req == {"messages": (("system", "Be brief."), ("user", f"Question: Q?\n\n{ASK}"))}


def test_chat_demonstrations_of_several_outputs_answer_in_label_lines():
    comp = capital(outputs=("answer", "confidence"), style="chat")
    demo = {**DEMO, "confidence": "high"}
    msgs = comp.render({"question": "Capital of Peru?"}, "", [demo])["messages"]
    assert msgs[0] == ("system", "Names capitals.")  # no instruction: the description
    assert msgs[1][1].endswith("Respond with one line per field:\nAnswer: ...\nConfidence: ...")
    assert msgs[2] == ("assistant", "Answer: Paris\nConfidence: high")


@pytest.mark.parametrize("style", ["chat", "completion"])
def test_the_reply_is_read_the_same_either_way(style, scripted_lm):
    for reply in ("Lima", "Answer: Lima", " Lima \n"):
        out, _ = sent(capital(style=style), {}, scripted_lm, reply)
        assert out == {"answer": "Lima"}, (style, reply)
    multi = capital(outputs=("answer", "confidence"), style=style)
    assert multi.parse("Answer: Quito\nConfidence: low") == {"answer": "Quito", "confidence": "low"}


def test_dspy_predictors_send_the_components_own_chat_request_to_an_api_model(tmp_path, scripted_lm):
    from test_dspy import shout_config

    lm = scripted_lm(lambda r: "apple")
    rt = build_runtime(shout_config(tmp_path, "none", f"lm.model={API}"), lm=lm)
    with dspy.context(lm=task_lm(rt.system, rt.composed.run.lm)):
        SystemProgram(rt.system, rt.state)(text="apple")
    rt.system.run({"text": "apple"}, rt.state)
    (_, via_dspy), (_, direct) = lm.requests
    assert direct.is_chat and direct.messages[1] == ("user", "Text: hi\n\nRespond with only the loud.")
    assert via_dspy == direct  # byte-identical: one cache entry serves both
