"""LLM features of outputs (optimas_cli/rewards/llm_features.py), on the real embedded SmolLM2."""

from __future__ import annotations

import numpy as np
import pytest

from optimas_cli.rewards.llm_features import LlamaFeaturizer, judge_messages

pytestmark = pytest.mark.slow

DESC = "Answers the question in a few words from the context."
INPUTS = {"question": "What is the capital of France?",
          "context": "France is a country in Europe. Its capital and largest city is Paris."}


@pytest.fixture(scope="module")
def featurizer():
    return LlamaFeaturizer("local/smollm2-135m-instruct", n_ctx=512, n_threads=1)


def test_a_candidate_scores_the_same_whatever_was_scored_before_it(featurizer):
    # the shared prefix is evaluated once and the cache cut back to it between candidates:
    # what an earlier candidate left in the cache must not reach a later one
    alone = featurizer.features(DESC, INPUTS, [{"answer": "Paris"}])[0]
    after = featurizer.features(DESC, INPUTS, [{"answer": "Lyon, the second city of France, on "
                                                          "the Rhone"}, {"answer": "Paris"}])[1]
    assert after.judge == pytest.approx(alone.judge, abs=1e-3)
    assert after.loglik == pytest.approx(alone.loglik, abs=1e-3)
    np.testing.assert_allclose(after.last, alone.last, atol=1e-3)
    np.testing.assert_allclose(after.mean, alone.mean, atol=1e-3)


def test_features_depend_on_the_output_and_the_input(featurizer):
    paris, berlin = featurizer.features(DESC, INPUTS, [{"answer": "Paris"}, {"answer": "Berlin"}])
    assert paris.loglik != berlin.loglik and not np.allclose(paris.last, berlin.last)
    other = featurizer.features(DESC, {**INPUTS, "question": "Which city is the capital?"},
                                [{"answer": "Paris"}])[0]
    assert not np.allclose(other.mean, paris.mean)
    # the output copied from the context is more likely under the model than one absent from it
    assert paris.loglik > berlin.loglik
    assert paris.last.shape == (featurizer.n_embd,) and np.isfinite(paris.judge)


def test_the_judge_prompt_names_the_job_the_input_and_clips_long_fields():
    text = judge_messages(DESC, {"context": "x" * 5000}, max_field_chars=300)
    assert DESC in text and "context: " in text and "[...]" in text and len(text) < 800
