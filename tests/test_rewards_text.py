"""The text a reward head sees: per-field token budgets (optimas_cli.rewards.text)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from optimas_cli.rewards import format_text, resolve_backbone  # noqa: E402
from optimas_cli.rewards.text import TextEncoder, waterfill  # noqa: E402

DESC = "Retrieves the top-k Wikipedia paragraphs (BM25)."
QUESTION = {"question": "Which magazine was started first, Arthur's Magazine or First for Women?"}


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_backbone("all-MiniLM-L6-v2")[0],
                                         local_files_only=True)


def passages(k: int) -> str:
    """k retrieved passages of ~60 tokens each, joined as the retriever joins them."""
    return "\n".join(
        f"[{n}] Passage {n} about magazine number {n}: " + " ".join(
            f"word{n}x{i}" for i in range(40)) for n in range(1, k + 1))


def contains(seq: list[int], sub: list[int]) -> bool:
    return any(seq[i : i + len(sub)] == sub for i in range(len(seq) - len(sub) + 1))


def test_waterfill_keeps_short_segments_whole():
    assert waterfill([5, 100, 7], 200) == [5, 100, 7]
    assert waterfill([5, 100, 7], 40) == [5, 28, 7]
    assert waterfill([50, 100, 70], 60) == [20, 20, 20]
    assert sum(waterfill([3, 90, 91], 50)) == 50
    assert waterfill([3, 4], 0) == [0, 0]


def test_short_text_equals_the_tokenizer_on_format_text(tokenizer):
    enc = TextEncoder(tokenizer, 256)
    ids = enc.encode("Answers.", {"q": "hi", "k": 3}, {"a": "yo"})
    assert ids == list(tokenizer(format_text("Answers.", {"q": "hi", "k": 3}, {"a": "yo"}))[
        "input_ids"])


def test_question_is_kept_next_to_a_long_retrieved_output(tokenizer):
    """The retriever's output is 10 passages (~700 tokens): the question must stay whole."""
    enc = TextEncoder(tokenizer, 256)
    ids = enc.encode(DESC, QUESTION, {"retrieve_content": passages(10)})
    assert len(ids) == 256
    q_ids = enc.tokens(f"question: {QUESTION['question']}\n")
    assert contains(ids, q_ids), "the question was cut or dropped"
    assert contains(ids, enc.tokens(f"Component: {DESC}\n"))
    assert contains(ids, enc.tokens("Output:\n"))
    # the long output keeps its start and its end
    text = tokenizer.decode(ids)
    assert "passage 1 about" in text and "word10x39" in text


def test_long_input_does_not_crowd_out_the_output_or_the_question(tokenizer):
    enc = TextEncoder(tokenizer, 128)
    ids = enc.encode("Answers.", {**QUESTION, "context": passages(8)}, {"answer": "Arthur's"})
    assert len(ids) == 128
    assert contains(ids, enc.tokens(f"question: {QUESTION['question']}\n"))
    assert contains(ids, enc.tokens("answer: Arthur's\n"))


def test_retrieved_outputs_of_different_length_give_different_tokens(tokenizer):
    """k=5 and k=10 passages share their head; the text must still tell them apart."""
    enc = TextEncoder(tokenizer, 256)
    seqs = {k: enc.encode(DESC, QUESTION, {"retrieve_content": passages(k)}) for k in (1, 5, 10)}
    assert len({tuple(s) for s in seqs.values()}) == 3
    assert len(seqs[5]) == len(seqs[10]) == 256  # both cut to the budget ...
    text5, text10 = tokenizer.decode(seqs[5]), tokenizer.decode(seqs[10])
    assert "5 lines" in text5 and "10 lines" in text10  # ... with their size named


def test_a_field_longer_than_the_whole_budget_is_cut_to_fit(tokenizer):
    enc = TextEncoder(tokenizer, 48)
    ids = enc.encode("x", {"q": "y"}, {"a": " ".join(["background"] * 300)})
    assert len(ids) == 48
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    assert contains(ids, enc.tokens("q: y\n"))
