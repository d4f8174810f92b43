"""Local reward functions (LRFs) for Optimas (arXiv 2507.03041).

One :class:`LocalRewardModel` per compound system: a shared text backbone and one
scalar head per optimizable component, trained with the Bradley-Terry loss on
preference pairs collected from rollouts.

    pairs.py     PreferencePair; the train / held-out split by input, fixed per model
    text.py      the (description, inputs, output) text and its per-field token budgets
    backbone.py  loading the embedded MiniLM or any Hugging Face backbone (LoRA by peft)
    model.py     LocalRewardModel: backbone + heads, scoring, alignment metrics, save/load
    train.py     Bradley-Terry training, of everything or of some heads only
    trust.py     whether a head may rank: held-out own outputs, against input-blind controls
    io.py        the files a saved model is made of
"""

from optimas_cli.rewards.backbone import DEFAULT_BACKBONE, resolve_backbone
from optimas_cli.rewards.model import LocalRewardModel
from optimas_cli.rewards.pairs import InputSplit, PreferencePair, input_key, split_by_input
from optimas_cli.rewards.text import format_text
from optimas_cli.rewards.train import bt_loss, fit_reward_model, gap_weights

__all__ = [
    "DEFAULT_BACKBONE",
    "InputSplit",
    "LocalRewardModel",
    "PreferencePair",
    "bt_loss",
    "fit_reward_model",
    "format_text",
    "gap_weights",
    "input_key",
    "resolve_backbone",
    "split_by_input",
]
