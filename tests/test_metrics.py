"""HotpotQA answer F1/EM on known cases (official normalization)."""

import pytest

from optimas_cli.metrics import exact_match, f1_score, normalize_answer


def test_normalization_drops_case_punctuation_articles():
    assert normalize_answer("The  Beatles!") == "beatles"


@pytest.mark.parametrize("pred,gold,f1,em", [
    ("Paris", "paris", 1.0, 1.0),
    ("the city of Paris", "Paris", 0.5, 0.0),  # tokens city, of, paris: P=1/3, R=1
    ("London", "Paris", 0.0, 0.0),
    ("yes", "no", 0.0, 0.0),
    ("no", "no", 1.0, 1.0),
    ("yes it is", "yes", 0.0, 0.0),  # yes/no answers must match exactly
    ("", "Paris", 0.0, 0.0),
    ("Bath Maine", "Bath, Maine", 1.0, 1.0),
])
def test_f1_em_known_cases(pred, gold, f1, em):
    assert f1_score(pred, gold) == pytest.approx(f1)
    assert exact_match(pred, gold) == em
