"""Typed schemas of a composed run config.

Every model forbids unknown keys, so a typo fails at load with the key's path
instead of being silently ignored. `config.validate` turns pydantic's errors
into one message naming the key, the value and the YAML file.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from optimas_cli.lm.config import LMConfig

VariableType = Literal["prompt", "hyperparameter", "model", "weights"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoraSpec(Strict):
    """The shape of a `weights` variable's LoRA adapter (fixed for a run: each update
    continues training the same adapter)."""

    r: int = Field(8, ge=1, description="LoRA rank of the adapter")
    alpha: float = Field(16.0, gt=0, description="LoRA scaling factor alpha")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the LoRA layers in training")
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "v_proj"], min_length=1,
                                      description="names of the modules the adapter wraps")


class VariableConfig(Strict):
    """An optimizable variable and its search space.

    prompt: `instruction` text and few-shot `demos` (dicts of field -> value).
    hyperparameter: `value` with finite `choices`, or a numeric range `low`..`high`.
    model: `value` is an LM name, `choices` the LM names to choose among.
    weights: `value` is a saved adapter directory (or null for the base weights) of a LoRA
    of shape `lora` on `base_model` (default: the component's model), a local/ model.
    """

    type: VariableType = Field(description="what the variable is: prompt, hyperparameter, model "
                                           "(an LM name) or weights (a LoRA adapter)")
    description: str = Field("", description="what the variable controls, in words")
    value: Any = Field(None, description="initial value: a hyperparameter value, an LM name, or an "
                                         "adapter directory (weights; null: base weights)")
    choices: list[Any] | None = Field(None, description="the finite search space (model: the LM "
                                                        "names to choose among)")
    low: float | None = Field(None, description="lower end of a numeric range (with high)")
    high: float | None = Field(None, description="upper end of a numeric range (with low)")
    log: bool = Field(False, description="draw from low..high on a log scale")
    integer: bool = Field(False, description="round values drawn from low..high to integers")
    instruction: str | None = Field(None, description="prompt: the initial instruction (required "
                                                      "for prompt variables)")
    demos: list[dict[str, Any]] = Field(default_factory=list,
                                        description="prompt: initial few-shot demonstrations "
                                                    "(dicts of field -> value)")
    max_demos: int = Field(4, ge=0, description="prompt: at most this many demonstrations kept")
    base_model: str | None = Field(None, description="weights: the local/ model the adapter is "
                                                     "trained on (null: the component's model)")
    lora: LoraSpec | None = Field(None, description="weights: the adapter's shape (null: the "
                                                    "LoraSpec defaults)")

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
    kind: str = Field(description="component kind: llm, retriever, python, sandboxed_exec, or a "
                                  "class by dotted path")
    description: str = Field(description="what the component does (shown to proposers and the "
                                         "reward model)")
    inputs: list[str] = Field(description="fields the component reads")
    outputs: list[str] = Field(min_length=1, description="fields the component writes")
    params: dict[str, Any] = Field(default_factory=dict,
                                   description="kind-specific settings, checked by the kind")
    # a variable set to null is dropped: the component runs on its params (an ablation, e.g.
    # `system.components.X.variables.adapter=null` keeps X's base weights, never trained)
    variables: dict[str, VariableConfig | None] = Field(
        default_factory=dict, description="optimizable variables by name (null: dropped, the "
                                          "component runs on its params)")

    @field_validator("variables", mode="after")
    @classmethod
    def _drop_null(cls, variables: dict[str, VariableConfig | None]) -> dict[str, VariableConfig]:
        return {k: v for k, v in variables.items() if v is not None}


class SystemConfig(Strict):
    name: str = Field(description="system name (run directories: runs/<name>/<timestamp>/)")
    description: str = Field("", description="what the system does, in words")
    inputs: list[str] = Field(min_length=1, description="fields every example provides")
    final_output: str = Field(description="the field the metric reads")
    loader: str = Field(description="dotted path of the data loader: (DataConfig) -> Dataset")
    metric: str = Field(description="dotted path of the metric: (example, fields) -> "
                                    "{score: float, ...}")
    components: dict[str, ComponentConfig] = Field(min_length=1,
                                                   description="the components by name")


class DataConfig(Strict):
    """`data:`, what a loader is given: where the data is, how it maps to examples (the
    built-in loaders' inputs/target/id), and the sizes and seed of the splits."""

    path: str | None = Field(None, description="data file or name the loader reads (null: the "
                                               "loader's default location)")
    train_size: int = Field(30, ge=0, description="train examples: rollouts and reward training")
    val_size: int = Field(20, ge=0, description="validation examples: accept/revert decisions")
    test_size: int = Field(30, ge=0, description="test examples: the reported numbers")
    seed: int = Field(0, description="seed of the train/val/test split")
    # the field mapping of the built-in loaders (optimas_cli.loaders: jsonl, csv, hf_disk);
    # other loaders ignore these keys
    inputs: dict[str, str] | None = Field(
        None, description="built-in loaders: system input -> column, e.g. {question: q}")
    target: str | dict[str, str] | None = Field(
        None, description="built-in loaders: the target column (example.target = {column: "
                          "value}), or target key -> column")
    id: str | None = Field(None, description="built-in loaders: the column of example ids "
                                             "(null: the row's line number)")


class EvalConfig(Strict):
    split: Literal["train", "val", "test"] = Field("test", description="the split `optimas "
                                                                      "evaluate` scores")
    workers: int = Field(4, ge=1, description="examples in flight at once")
    repeats: int = Field(1, ge=1, description="repeated evaluations (different sampling seeds)")
    # optimas_cli.failures.EvaluationFailed: `optimas evaluate`, the final test and the
    # validation of the starting system end the run FAILED past this share of failed examples
    max_failed_share: float = Field(0.5, ge=0, le=1,
                                    description="an evaluation with a larger share of failed "
                                                "examples ends the run FAILED (1: only an "
                                                "initial validation where all failed)")


class CollectConfig(Strict):
    num_inputs: int = Field(8, ge=1, description="train inputs per collection (a fresh seeded "
                                                 "draw each iteration)")
    num_samples: int = Field(3, ge=1, description="alternative outputs (or variable values) of the "
                                                  "component per input")
    num_rollouts: int = Field(1, ge=1, description="downstream completions per candidate; its "
                                                   "score is their mean (>1 needs "
                                                   "rollout_temperature > 0)")
    temperature: float = Field(0.9, gt=0, description="sampling temperature of the alternative "
                                                      "outputs")
    rollout_temperature: float = Field(0.0, ge=0, description="temperature downstream of the "
                                                              "component (0: a candidate's score "
                                                              "is deterministic)")
    add_gold: bool = Field(True, description="the gold answer as a top candidate of the final "
                                             "component")
    workers: int = Field(4, ge=1, description="rollouts in flight at once")
    # lazy: collect for a component when it is first selected (budget goes where it is used);
    # all: the paper's eager start, every component at iteration 0
    initial: Literal["lazy", "all"] = Field(
        "lazy", description="lazy: collect for a component when first selected; all: every "
                            "component at iteration 0 (the paper)")
    # Collection rounds per iteration (fresh inputs each) while the component has fewer than
    # `min_pairs` pairs, or (adaptive_rounds) while the best values of one of its model or
    # hyperparameter variables tie on measured returns (the choice would fall to the LRF)
    max_rounds: int = Field(2, ge=1, description="collection rounds per iteration at most (fresh "
                                                 "inputs each), while pairs < min_pairs or a tie "
                                                 "lasts")
    # adaptive_rounds: rounds also go on while such a tie lasts, and stop after a round that
    # found no new pair (more of the same inputs' evidence would not help); false: rounds
    # only while pairs < min_pairs, every round up to max_rounds (the recorded reproduction)
    adaptive_rounds: bool = Field(True, description="more rounds while a component's best "
                                                    "model/hyperparameter values tie; false: only "
                                                    "while pairs < min_pairs")


class WeightsUpdateConfig(Strict):
    """How a `weights` variable's LoRA adapter is trained against its component's LRF
    (optimas_cli/weights/; why the defaults: BENCHMARKS.md, "Why the defaults are what they
    are")."""

    # dpo: DPO on pairs of the policy's own samples ranked by the LRF (best vs worst);
    # grpo: TRL's GRPO with the LRF as the reward (on-policy, generates with transformers)
    method: Literal["dpo", "grpo"] = Field(
        "dpo", description="dpo: DPO on the policy's own samples ranked by the LRF; grpo: TRL's "
                           "GRPO with the LRF as reward")
    steps: int = Field(4, ge=1, description="optimizer steps per update")
    lr: float = Field(1e-3, gt=0, description="learning rate of the adapter")
    batch_size: int = Field(2, ge=1, description="dpo: pairs per step; grpo: prompts per step")
    samples: int = Field(4, ge=2, description="completions per prompt (dpo: ranked; grpo: the "
                                              "group)")
    temperature: float = Field(1.0, gt=0, description="sampling temperature of those completions")
    beta: float = Field(0.1, gt=0, description="KL control to the starting adapter: DPO's beta / "
                                               "GRPO's KL coefficient")
    # the measured KL(new || start), nats per completion on the training prompts; a trained
    # adapter further from its start than this is refused (null: no bound)
    max_kl: float | None = Field(10.0, gt=0, description="refuse an adapter whose measured "
                                                         "KL(new || start) per completion exceeds "
                                                         "this (null: no bound)")
    kl_samples: int = Field(2, ge=1, description="completions per prompt for that KL measurement")
    max_prompt_tokens: int = Field(1024, gt=0, description="longer prompts keep their end")
    threads: int | None = Field(None, ge=1, description="torch threads during an update (null: "
                                                        "torch's default)")


class UpdateConfig(Strict):
    prompt: Literal["opro", "mipro", "copro"] = Field(
        "opro", description="how prompt variables are updated: opro, or DSPy's mipro / copro")
    num_candidates: int = Field(3, ge=1, description="new instructions proposed per update")
    per_component_train_size: int = Field(8, ge=1, description="inputs each candidate is scored "
                                                               "on by the local reward")
    max_demos: int = Field(2, ge=0, description="demonstrations bootstrapped from the "
                                                "highest-reward rollouts (0..max searched)")
    demo_min_score: float = Field(0.5, description="a rollout candidate is a demo only if its "
                                                   "global score reaches this")
    opro_rounds: int = Field(2, ge=1, description="OPRO proposal rounds; each sees the earlier "
                                                  "rounds' scores")
    proposer_model: str | None = Field(None, description="LM that writes the instructions (null: "
                                                         "lm.model)")
    max_choices: int = Field(8, ge=1, description="larger hyperparameter spaces are scored on a "
                                                  "seeded sample of this many values")
    choice_mode: Literal["best", "per_input"] = Field(
        "best", description="model/hyperparameter updates: best: the top value by the LRF; "
                            "per_input: sampled per input")
    choice_temperature: float = Field(0.1, gt=0, description="per_input: p(value) ~ "
                                                             "exp(LRF / temperature)")
    weights: WeightsUpdateConfig = Field(WeightsUpdateConfig(),
                                         description="LoRA training of weights variables")


OPTIMIZERS = ("optimas", "none", "mipro", "gepa", "textgrad", "llmselector", "search")


def _method_name(name: str) -> str:
    if name not in OPTIMIZERS and "." not in name.replace(":", "."):
        raise ValueError(f"unknown method {name!r}: one of {', '.join(OPTIMIZERS)}, or a "
                         "Method subclass by dotted path (package.module.Class)")
    return name


class OptimizerConfig(Strict):
    # a method (optimas_cli/methods/): one of OPTIMIZERS, or a Method subclass by dotted path
    name: Annotated[str, AfterValidator(_method_name)] = Field(
        "optimas", description="the method: optimas, none, a baseline (mipro, gepa, textgrad, "
                               "llmselector, search) or a Method's dotted path")
    num_iterations: int = Field(4, ge=0, description="optimas: at most this many iterations "
                                                     "(select, collect, adapt, update, validate)")
    selection_temperature: float = Field(0.5, gt=0, description="softmax temperature over the "
                                                                "components' mean preference "
                                                                "gaps; lower = greedier")
    replay_buffer_size: int = Field(256, ge=0, description="pairs per component kept from earlier "
                                                           "iterations")
    min_pairs: int = Field(4, ge=1, description="a component is optimized only on a reward head "
                                                "trained on at least this many pairs")
    # optimas: components collected, adapted and updated in turn per iteration, then validated
    # together (one validation for several changes; 1 is the paper's loop)
    components_per_iteration: int = Field(1, ge=1, description="optimas: components updated per "
                                                               "iteration, validated together "
                                                               "(1: the paper's loop)")
    # Acceptance compares candidate and incumbent on the same validation examples:
    # mean: mean gain > accept_threshold; bootstrap: the gain exceeds accept_threshold with
    # confidence accept_confidence (one-sided paired bootstrap bound); sign: more wins than
    # losses by a one-sided exact sign test at accept_confidence (McNemar's on a 0/1 metric).
    accept_rule: Literal["mean", "bootstrap", "sign"] = Field(
        "mean", description="how a candidate beats the incumbent on validation: mean gain, "
                            "paired bootstrap bound, or sign test")
    accept_threshold: float = Field(0.0, description="accept only a validation gain above this")
    accept_confidence: float = Field(0.9, gt=0, lt=1, description="confidence of the bootstrap "
                                                                  "and sign rules")
    collect: CollectConfig = Field(CollectConfig(), description="rollouts and preference pairs")
    update: UpdateConfig = Field(UpdateConfig(), description="how a selected component's "
                                                             "variables are updated")
    # The budget in (partial) system runs an optimizer may spend (optimas: no iteration starts
    # past it; baselines: checked by each, optimas_cli/baselines/<name>.py), and baseline settings.
    budget_system_runs: int | None = Field(None, ge=1, description="(partial) system runs the "
                                                                   "method may spend, validation "
                                                                   "included (null: no cap)")
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="the method's own options (per method: `optimas "
                                                "options optimizer.options`)")


class RewardConfig(Strict):
    backbone: str = Field("all-MiniLM-L6-v2", description="reward backbone: the embedded "
                                                          "MiniLM, any Hugging Face "
                                                          "encoder/decoder name, or an "
                                                          "embedded local/... LLM as a frozen "
                                                          "judge (reward=judge)")
    max_length: int = Field(256, gt=0, description="tokens per (description, inputs, output) text; "
                                                   "each field gets its own share")
    lora: dict[str, Any] | None = Field(None, description="LoRA on the backbone, e.g. {r: 8, "
                                                          "alpha: 16} (needs a GPU to be worth it)")
    epochs: int = Field(3, ge=1, description="epochs of a backbone fit")
    # A backbone fit goes on past `epochs`, one epoch at a time, until every head beats
    # chance on its held-out pairs (one-sided binomial test), up to this many epochs.
    max_epochs: int = Field(6, ge=1, description="a backbone fit goes on (up to this) until each "
                                                 "head beats chance on held-out pairs")
    lr: float = Field(2e-5, gt=0, description="learning rate of the backbone")
    head_lr: float = Field(1e-3, gt=0, description="learning rate of the per-component heads")
    batch_size: int = Field(16, ge=1, description="pairs per training step")
    weight_by_gap: bool = Field(True, description="weight pairs by their normalized score gap")
    gap_floor: float = Field(0.1, gt=0, le=1, description="the lowest such weight (> 0: no pair "
                                                          "is weighted 0)")
    holdout: float = Field(0.2, ge=0, lt=1, description="share of inputs held out (for the whole "
                                                        "run) to measure the heads")
    # A backbone fit recomputes activations in its backward pass instead of keeping them,
    # the same model (why: BENCHMARKS.md, "Why the defaults are what they are")
    gradient_checkpointing: bool = Field(True, description="recompute activations in a backbone "
                                                           "fit's backward pass: less memory, "
                                                           "slower")
    # Head-only adaptation in each iteration: backbone features are cached, so epochs are
    # cheap (why these numbers: BENCHMARKS.md, "Why the defaults are what they are")
    adapt_epochs: int = Field(30, ge=1, description="epochs of the head-only adaptation in each "
                                                    "iteration (features cached: cheap)")
    adapt_head_lr: float = Field(1e-2, gt=0, description="learning rate of that head-only "
                                                         "adaptation")


class TrackingConfig(Strict):
    """Where a run is tracked besides its run directory (optimas_cli/tracking.py)."""

    kind: Literal["none", "mlflow"] = Field("none", description="none, or mlflow (`tracking="
                                            "mlflow`; pip install -e '.[mlflow]')")
    uri: str | None = Field(None, description="the MLflow tracking URI (null: a local mlruns/ "
                                              "store in the working directory)")
    experiment: str | None = Field(None, description="the MLflow experiment (null: the run "
                                                     "config's name)")


class RunConfig(Strict):
    name: str = Field(description="the run config's name")
    seed: int = Field(0, description="seed of the run (sampling, draws, methods)")
    tag: str | None = Field(None, description="a label `optimas compare` adds to the method's "
                                              "name, e.g. tag=largest for optimizer=none with "
                                              "lm.model at the ladder's top")
    run_root: str = Field("runs", description="run directories land in <run_root>/<system>/"
                                              "<timestamp>/")
    run_dir: str | None = Field(None, description="an explicit run directory (overrides run_root)")
    system_state: str | None = Field(None, description="a system.yaml of variable values to start "
                                                       "from")
    lm: LMConfig = Field(description="the LM every llm component uses by default")
    system: SystemConfig = Field(description="the compound system: components and their graph")
    data: DataConfig = Field(DataConfig(), description="the data splits")
    eval: EvalConfig = Field(EvalConfig(), description="evaluation")
    optimizer: OptimizerConfig = Field(OptimizerConfig(), description="the optimization method")
    reward: RewardConfig = Field(RewardConfig(), description="the local reward model")
    resume: str | None = Field(None, description="a run directory to continue")
    tracking: TrackingConfig = Field(TrackingConfig(), description="experiment tracking (MLflow)")
