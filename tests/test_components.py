"""Built-in kinds: LLM prompt rendering and parsing, BM25 retrieval, Python functions."""

from __future__ import annotations

from optimas_cli.components.llm import LLMComponent
from optimas_cli.components.retriever import RetrieverComponent
from optimas_cli.graph import Call
from optimas_cli.lm.config import LMConfig
from optimas_cli.schema import ComponentConfig


def llm(outputs=("answer",), style="completion", **params) -> LLMComponent:
    cfg = ComponentConfig(kind="llm", description="Answers.", inputs=["question", "context"],
                          outputs=list(outputs), params={"style": style, **params},
                          variables={"prompt": {"type": "prompt", "instruction": "Answer briefly."}})
    return LLMComponent("qa", cfg, {"lm_config": LMConfig(model="local/x", max_tokens=12)})


DEMO = {"question": "Capital of France?", "context": "Paris is the capital.", "answer": "Paris"}


def test_completion_prompt_is_a_few_shot_document_ending_in_the_output_label():
    c = llm()
    req = c.render({"question": "Capital of Peru?", "context": "Lima is the capital."},
                   "Answer briefly.", [DEMO])
    assert req["prompt"] == (
        "Answer briefly.\n\n"
        "Question: Capital of France?\nContext: Paris is the capital.\nAnswer: Paris\n\n"
        "Question: Capital of Peru?\nContext: Lima is the capital.\nAnswer:")


def test_chat_prompt_puts_instruction_in_system_message():
    c = llm(style="chat")
    req = c.render({"question": "Q?", "context": "C."}, "Be brief.", [])
    (role0, sys_msg), (role1, user) = req["messages"]
    assert (role0, sys_msg, role1) == ("system", "Be brief.", "user")
    assert user.startswith("Question: Q?\nContext: C.") and "only the answer" in user


def test_long_inputs_are_cut_and_labels_are_configurable():
    c = llm(max_field_chars=10, labels={"context": "Passages"})
    req = c.render({"question": "q", "context": "x" * 50}, "", [])
    assert "Passages: xxxxxxxxxx ...\nAnswer:" in req["prompt"]


def test_parse_single_output_strips_a_repeated_label():
    c = llm()
    assert c.parse("  Lima ") == {"answer": "Lima"}
    assert c.parse("Answer: Lima") == {"answer": "Lima"}


def test_parse_several_outputs_and_fallback():
    c = llm(outputs=("answer", "confidence"))
    assert c.parse("Lima\nConfidence: high") == {"answer": "Lima", "confidence": "high"}
    assert c.parse("Confidence: low\nAnswer: Quito") == {"answer": "Quito", "confidence": "low"}
    # nothing labelled: the whole text is the first output, the rest empty
    assert c.parse("just words") == {"answer": "just words", "confidence": ""}


def test_forward_sends_variables_sampling_and_stop(scripted_lm):
    c = llm()
    lm = scripted_lm(lambda r: " Lima\n")
    call = Call(lm=lm, component="qa", temperature=0.7, sample_index=3, seed=5)
    out = c.forward({"question": "q", "context": "c"},
                    {"prompt": {"instruction": "NEW", "demos": [DEMO]}}, call)
    assert out == {"answer": "Lima"}
    comp, req = lm.requests[0]
    assert comp == "qa" and req.prompt.startswith("NEW\n\nQuestion: Capital of France?")
    assert (req.temperature, req.sample_index, req.seed, req.stop, req.max_tokens, req.model) == (
        0.7, 3, 5, ("\n",), 12, "local/x")
    assert call.usage.calls == 1 and call.usage.completion_tokens == 1


PASSAGES = ["Eiffel Tower: a lattice tower in Paris, France.",
            "Mount Fuji: the highest volcano in Japan.",
            "Paris: the capital and largest city of France.",
            "Kyoto: a city in Japan, former capital."]


def retriever(k=2) -> RetrieverComponent:
    cfg = ComponentConfig(kind="retriever", description="BM25", inputs=["query"], outputs=["docs"],
                          params={"k": k},
                          variables={"k": {"type": "hyperparameter", "value": k, "choices": [1, 2, 3]}})
    return RetrieverComponent("r", cfg, {"corpus": PASSAGES})


def test_bm25_ranks_relevant_passages_and_respects_k():
    r = retriever()
    out = r.forward({"query": "volcano Japan"}, {"k": 1}, call=None)["docs"]
    assert out == "Mount Fuji: the highest volcano in Japan."
    out = r.forward({"query": "capital of France Paris"}, {"k": 2}, call=None)["docs"]
    lines = out.splitlines()
    assert len(lines) == 2 and "Paris: the capital" in lines[0]


def test_numbered_passages_on_request():
    r = retriever()
    r.params.numbered = True
    out = r.forward({"query": "volcano Japan"}, {"k": 2}, call=None)["docs"]
    assert out.startswith("[1] Mount Fuji") and "\n[2] " in out


def test_empty_query_retrieves_nothing():
    assert retriever().forward({"query": ""}, {"k": 2}, call=None) == {"docs": ""}
