"""Typed schemas of a composed run config.

Every model forbids unknown keys, so a typo fails at load with the key's path
instead of being silently ignored. `config.validate` turns pydantic's errors
into one message naming the key, the value and the YAML file.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from optimas_cli.lm.config import LMConfig

VariableType = Literal["prompt", "hyperparameter", "model", "weights"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoraSpec(Strict):
    """The shape of a `weights` variable's LoRA adapter (fixed for a run: each update
    continues training the same adapter)."""

    r: int = Field(8, ge=1)
    alpha: float = Field(16.0, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "v_proj"], min_length=1)


class VariableConfig(Strict):
    """An optimizable variable and its search space.

    prompt: `instruction` text and few-shot `demos` (dicts of field -> value).
    hyperparameter: `value` with finite `choices`, or a numeric range `low`..`high`.
    model: `value` is an LM name, `choices` the LM names to choose among.
    weights: `value` is a saved adapter directory (or null for the base weights) of a LoRA
    of shape `lora` on `base_model` (default: the component's model), a local/ model.
    """

    type: VariableType
    description: str = ""
    value: Any = None
    choices: list[Any] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    instruction: str | None = None
    demos: list[dict[str, Any]] = Field(default_factory=list)
    max_demos: int = Field(4, ge=0)
    base_model: str | None = None
    lora: LoraSpec | None = None  # weights only; default LoraSpec()

    @model_validator(mode="after")
    def _check_space(self) -> VariableConfig:
        if self.type != "weights" and (self.lora is not None or self.base_model is not None):
            raise ValueError("`lora` and `base_model` belong to weights variables")
        if self.type == "weights":
            if self.choices is not None or self.low is not None or self.high is not None:
                raise ValueError("a weights variable has no `choices`/`low`/`high`: its value is "
                                 "an adapter directory (or null)")
            if self.value is not None and not isinstance(self.value, str):
                raise ValueError(f"a weights variable's value is an adapter directory or null, "
                                 f"not {self.value!r}")
            if self.lora is None:
                self.lora = LoraSpec()
        elif self.type == "prompt":
            if self.instruction is None:
                raise ValueError("a prompt variable needs `instruction`")
        elif self.type in ("hyperparameter", "model"):
            ranged = self.low is not None or self.high is not None
            if self.choices is None and not ranged:
                raise ValueError(f"a {self.type} variable needs `choices` or `low`/`high`")
            if self.type == "model" and self.choices is None:
                raise ValueError("a model variable needs `choices` (LM names)")
            if ranged and (self.low is None or self.high is None or self.low > self.high):
                raise ValueError("`low` and `high` must both be set with low <= high")
            if self.value is None:
                raise ValueError(f"a {self.type} variable needs an initial `value`")
            if self.choices is not None and self.value not in self.choices:
                raise ValueError(f"initial value {self.value!r} is not among choices {self.choices}")
            if ranged and self.choices is None and not (self.low <= self.value <= self.high):
                raise ValueError(f"initial value {self.value!r} is outside [{self.low}, {self.high}]")
        return self

    def initial_value(self) -> Any:
        if self.type == "prompt":
            return {"instruction": self.instruction, "demos": list(self.demos)}
        return self.value


class ComponentConfig(Strict):
    kind: str
    description: str
    inputs: list[str]
    outputs: list[str] = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)  # kind-specific, checked by the kind
    # a variable set to null is dropped: the component runs on its params (an ablation, e.g.
    # `system.components.X.variables.adapter=null` keeps X's base weights, never trained)
    variables: dict[str, VariableConfig | None] = Field(default_factory=dict)

    @field_validator("variables", mode="after")
    @classmethod
    def _drop_null(cls, variables: dict[str, VariableConfig | None]) -> dict[str, VariableConfig]:
        return {k: v for k, v in variables.items() if v is not None}


class SystemConfig(Strict):
    name: str
    description: str = ""
    inputs: list[str] = Field(min_length=1)  # fields every example provides
    final_output: str  # the field the metric reads
    loader: str  # dotted path: (DataConfig) -> Dataset
    metric: str  # dotted path: (example, fields) -> {"score": float, ...}
    components: dict[str, ComponentConfig] = Field(min_length=1)


class DataConfig(Strict):
    path: str | None = None  # None: the system loader's default location
    train_size: int = Field(30, ge=0)
    val_size: int = Field(20, ge=0)
    test_size: int = Field(30, ge=0)
    seed: int = 0


class EvalConfig(Strict):
    split: Literal["train", "val", "test"] = "test"
    workers: int = Field(4, ge=1)  # examples in flight at once
    repeats: int = Field(1, ge=1)  # repeated evaluations (different sampling seeds)


class CollectConfig(Strict):
    num_inputs: int = Field(8, ge=1)  # train inputs drawn per collection
    num_samples: int = Field(3, ge=1)  # alternative outputs (or values) of the component per input
    num_rollouts: int = Field(1, ge=1)  # downstream completions per candidate; scores are their mean
    temperature: float = Field(0.9, gt=0)  # sampling temperature of the alternative outputs
    rollout_temperature: float = Field(0.0, ge=0)  # downstream; > 0 makes rollouts differ
    add_gold: bool = True  # the gold answer as a top candidate of the final component
    # count: a pair with the gold answer on one side counts like any other; train_only: it
    # trains the reward head but counts neither toward `min_pairs` nor toward the preference
    # gap selection reads. Gold-vs-sample says the dataset's answer beats the model's, not
    # which of the component's own outputs is better (BENCHMARKS, "Local reward alignment")
    gold_pairs: Literal["count", "train_only"] = "count"
    workers: int = Field(4, ge=1)
    # lazy: collect for a component when it is first selected (budget goes where it is used);
    # all: the paper's eager start, every component at iteration 0
    initial: Literal["lazy", "all"] = "lazy"
    # Collection rounds per iteration (fresh inputs each) while the component has fewer than
    # `min_pairs` pairs, or (adaptive_rounds) while the best values of one of its model or
    # hyperparameter variables tie on measured returns (the choice would fall to the LRF)
    max_rounds: int = Field(2, ge=1)
    # adaptive_rounds: rounds also go on while such a tie lasts, and stop after a round that
    # found no new pair (more of the same inputs' evidence would not help); false: rounds
    # only while pairs < min_pairs, every round up to max_rounds (the recorded reproduction)
    adaptive_rounds: bool = True

    @property
    def sampled_pairs_only(self) -> bool:
        """Whether only pairs of sampled candidates count (toward min_pairs and the gaps)."""
        return self.gold_pairs == "train_only"


class WeightsUpdateConfig(Strict):
    """How a `weights` variable's LoRA adapter is trained against its component's LRF
    (optimas_cli/weights/; measurements behind the defaults in BENCHMARKS.md)."""

    # dpo: DPO on pairs of the policy's own samples ranked by the LRF (best vs worst);
    # grpo: TRL's GRPO with the LRF as the reward (on-policy, generates with transformers)
    # dpo is the default: on the benchmark of BENCHMARKS.md ("LoRA weight updates") it
    # raised the reward more per CPU-second than grpo, with less memory, and its sampling
    # runs in llama.cpp (fast) where grpo generates with transformers
    method: Literal["dpo", "grpo"] = "dpo"
    steps: int = Field(4, ge=1)  # optimizer steps per update
    lr: float = Field(1e-3, gt=0)
    batch_size: int = Field(2, ge=1)  # dpo: pairs per step; grpo: prompts per step
    samples: int = Field(4, ge=2)  # completions per prompt (dpo: ranked; grpo: the group)
    temperature: float = Field(1.0, gt=0)  # sampling temperature of those completions
    # KL control to the starting adapter: DPO's beta / GRPO's KL coefficient
    beta: float = Field(0.1, gt=0)
    # the measured KL(new || start), nats per completion on the training prompts; a trained
    # adapter further from its start than this is refused (null: no bound)
    max_kl: float | None = Field(10.0, gt=0)
    kl_samples: int = Field(2, ge=1)  # completions per prompt for that measurement
    max_prompt_tokens: int = Field(1024, gt=0)  # longer prompts keep their end
    threads: int | None = Field(None, ge=1)  # torch threads during an update (None: torch's)


class UpdateConfig(Strict):
    prompt: Literal["opro", "mipro", "copro"] = "opro"
    num_candidates: int = Field(3, ge=1)  # proposed instructions per update
    per_component_train_size: int = Field(8, ge=1)  # inputs each candidate is scored on
    max_demos: int = Field(2, ge=0)  # demonstrations bootstrapped from rollouts (0..max searched)
    demo_min_score: float = 0.5  # a rollout candidate is a demo only if its global score reaches this
    opro_rounds: int = Field(2, ge=1)  # proposal rounds; each sees the earlier rounds' scores
    proposer_model: str | None = None  # null: lm.model
    max_choices: int = Field(8, ge=1)  # a seeded sample of larger hyperparameter spaces
    # true: a prompt (instruction and demonstrations) is changed only by a reward head that beat
    # chance on its held-out pairs of the component's own outputs (the fit's one-sided binomial
    # test; pairs against the gold answer do not count); otherwise it is kept,
    # the step saying so. Model and hyperparameter choices that measured returns decide are
    # not held (BENCHMARKS.md, "Optimas with probes of barren components": a demonstration
    # chosen by a head with no held-out evidence cost 4 of 20 validation tasks)
    prompt_needs_evidence: bool = False
    choice_mode: Literal["best", "per_input"] = "best"
    choice_temperature: float = Field(0.1, gt=0)  # per_input: p(value) ~ exp(LRF / temperature)
    weights: WeightsUpdateConfig = WeightsUpdateConfig()


OPTIMIZERS = ("optimas", "none", "mipro", "gepa", "textgrad", "llmselector", "search")


class OptimizerConfig(Strict):
    name: Literal[OPTIMIZERS] = "optimas"  # optimas, or a baseline (optimas_cli/baselines/)
    num_iterations: int = Field(4, ge=0)
    selection_temperature: float = Field(1.0, gt=0)  # softmax over mean preference gaps
    replay_buffer_size: int = Field(256, ge=0)  # pairs per component kept from earlier iterations
    min_pairs: int = Field(4, ge=1)  # a component is optimized only on a head trained on this many
    # optimas: components collected, adapted and updated in turn per iteration, then validated
    # together (one validation for several changes; 1 is the paper's loop)
    components_per_iteration: int = Field(1, ge=1)
    # optimas: a component whose collections gave no preference pair (barren) gets up to this
    # many of its model/hyperparameter values validated directly, one per iteration, before the
    # components with pairs (stages/probe.py); 0: it is left out until a change is accepted
    probe_choices: int = Field(0, ge=0)
    # Acceptance compares candidate and incumbent on the same validation examples:
    # mean: mean gain > accept_threshold; bootstrap: the gain exceeds accept_threshold with
    # confidence accept_confidence (one-sided paired bootstrap bound); sign: more wins than
    # losses by a one-sided exact sign test at accept_confidence (McNemar's on a 0/1 metric).
    accept_rule: Literal["mean", "bootstrap", "sign"] = "mean"
    accept_threshold: float = 0.0
    accept_confidence: float = Field(0.9, gt=0, lt=1)
    collect: CollectConfig = CollectConfig()
    update: UpdateConfig = UpdateConfig()
    # The budget in (partial) system runs an optimizer may spend (optimas: no iteration starts
    # past it; baselines: checked by each, optimas_cli/baselines/<name>.py), and baseline settings.
    budget_system_runs: int | None = Field(None, ge=1)
    options: dict[str, Any] = Field(default_factory=dict)


class RewardConfig(Strict):
    backbone: str = "all-MiniLM-L6-v2"  # embedded; or any Hugging Face encoder/decoder name
    max_length: int = Field(256, gt=0)  # tokens per text; each field gets its own share
    lora: dict[str, Any] | None = None  # e.g. {r: 8, alpha: 16}; needs a GPU to be worth it
    epochs: int = Field(3, ge=1)
    # A backbone fit goes on past `epochs`, one epoch at a time, until every head beats
    # chance on its held-out pairs (one-sided binomial test), up to this many epochs.
    max_epochs: int = Field(6, ge=1)
    lr: float = Field(2e-5, gt=0)
    head_lr: float = Field(1e-3, gt=0)
    batch_size: int = Field(16, ge=1)
    weight_by_gap: bool = True
    gap_floor: float = Field(0.1, gt=0, le=1)  # > 0: no pair is weighted 0
    holdout: float = Field(0.2, ge=0, lt=1)
    # A backbone fit recomputes activations in its backward pass instead of keeping them,
    # the same model (BENCHMARKS.md, "Memory of a reward-model fit": peak 4.2 -> 2.0 GiB on
    # 120 HotpotQA pairs, 1.4-2.4x the fit time)
    gradient_checkpointing: bool = True
    # Head-only adaptation in each iteration: backbone features are cached, so epochs are
    # cheap, and MiniLM features differ little between candidates, so the head needs a
    # high rate (measured: 3 epochs at 1e-3 moved the loss 0.691 -> 0.681; 30 at 1e-2 learns).
    adapt_epochs: int = Field(30, ge=1)
    adapt_head_lr: float = Field(1e-2, gt=0)


class RunConfig(Strict):
    name: str
    seed: int = 0
    run_root: str = "runs"  # runs/<system>/<timestamp>/
    run_dir: str | None = None  # an explicit run directory (overrides run_root)
    system_state: str | None = None  # a system.yaml of variable values to load
    lm: LMConfig
    system: SystemConfig
    data: DataConfig = DataConfig()
    eval: EvalConfig = EvalConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    reward: RewardConfig = RewardConfig()
    resume: str | None = None  # a run directory to continue
