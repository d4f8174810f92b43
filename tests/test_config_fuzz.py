"""Config fuzzing: hundreds of seeded malformed configs and overrides through `optimas validate`.

Each case is one fault: a wrong type, an unknown key, a cycle in the component graph, an
input no component produces, a bad dotted path or data path, broken YAML, or a broken
override. Every one must end with exit code 2 and one line, `error: ...`, naming the file
(or the override), the key and the value where there is one, never a traceback; a fault that
makes several problems (a missing section's keys) gets `error: N problems:` and a line each.
"""

from __future__ import annotations

import copy
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from reliability_log import record
from typer.testing import CliRunner

from optimas_cli.cli import app

SEED = 9
BASE = yaml.safe_load((Path(__file__).parent / "linear.yaml").read_text())
runner = CliRunner()


@dataclass
class Case:
    kind: str
    config: dict | str  # the run config (mutated data, or raw YAML text)
    overrides: list[str] = field(default_factory=list)
    source: str | None = None  # an override the error must quote (None: the config file)
    says: list[str] = field(default_factory=list)  # key, value: each must be in the message

    @property
    def id(self) -> str:
        return f"{self.kind}:{' '.join(self.overrides) or self.says}"


def _set(data: dict, key: str, value) -> dict:
    out = copy.deepcopy(data)
    *parents, last = key.split(".")
    cur = out
    for p in parents:
        cur = cur.setdefault(p, {})
    cur[last] = value
    return out


def _ovr(value) -> str:
    """A value as an override's right-hand side."""
    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...")


# key -> bad values (each is refused by the schema with the key named)
WRONG_TYPES = {
    "name": [[1, 2], {"a": 1}],
    "seed": ["abc", 1.5, [0]],
    "run_root": [[1], {"x": 1}],
    "data.train_size": ["many", -3, 2.5, {"a": 1}, [1]],
    "data.val_size": [-1, "few"],
    "data.test_size": ["lots", -2],
    "data.seed": ["s", [1]],
    "eval.workers": [0, "two", -1],
    "eval.repeats": [0, "x"],
    "eval.split": ["dev", 3],
    "optimizer.num_iterations": [-1, "four"],
    "optimizer.accept_rule": ["maybe", 1],
    "optimizer.accept_confidence": [1.5, 0, "high"],
    "optimizer.selection_temperature": [0, "warm"],
    "optimizer.budget_system_runs": [0, "lots"],
    "optimizer.collect.num_samples": [0, "x"],
    "optimizer.collect.temperature": [0, "hot"],
    "optimizer.collect.initial": ["eager"],
    "optimizer.update.prompt": ["dspy", 3],
    "optimizer.update.num_candidates": [0],
    "reward.lr": ["fast", -1],
    "reward.holdout": [1.0, -0.5],
    "reward.epochs": [0, "ten"],
    "lm.temperature": [-1, "cold"],
    "lm.max_tokens": [0, "many"],
    "lm.cache.mode": ["sometimes", 1],
    "lm.max_calls": [0, "x"],
    "system.inputs": ["x", []],
    "system.final_output": [5, [1]],
    "system.components.scale.outputs": [[], "y"],
    "system.components.scale.inputs": ["x", 3],
    "system.components.scale.kind": [7],
    "system.components.scale.params": ["fns:scale", [1]],
    "system.components.scale.variables.factor.type": ["banana", 4],
    "system.components.scale.variables.factor.value": [7, "big"],
    "system.components.scale.variables.factor.choices": ["abc", 5],
}
UNKNOWN_AT = ["", "data", "eval", "optimizer", "optimizer.collect", "optimizer.update", "reward",
              "lm", "lm.cache", "system", "system.components.scale",
              "system.components.scale.variables.factor", "system.components.finish.params"]
UNKNOWN_NAMES = ["colour", "trian_size", "wokers", "temprature", "lr_rate", "x", "inptus"]


# a variable's space is checked as a whole: its error names the variable (and shows the value)
REPORTED_AS = {"system.components.scale.variables.factor.value":
               "system.components.scale.variables.factor"}


def wrong_types(rng: random.Random) -> list[Case]:
    cases = []
    for key, values in WRONG_TYPES.items():
        named = REPORTED_AS.get(key, key)
        for v in values:
            cases.append(Case("wrong type (file)", _set(BASE, key, v), says=[named, repr(v)]))
            if isinstance(v, str | int | float):  # the same as an override
                o = f"{key}={_ovr(v)}"
                cases.append(Case("wrong type (override)", BASE, [o], source=o, says=[named]))
    return cases


def unknown_keys(rng: random.Random) -> list[Case]:
    cases = []
    for at in UNKNOWN_AT:
        for name in rng.sample(UNKNOWN_NAMES, 3):
            key = f"{at}.{name}" if at else name
            cases.append(Case("unknown key (file)", _set(BASE, key, 1), says=[key]))
        name = rng.choice(UNKNOWN_NAMES)
        key = f"{at}.{name}" if at else name
        for o in (f"+{key}=1", f"{key}=blue"):
            cases.append(Case("unknown key (override)", BASE, [o], source=o, says=[key]))
    return cases


def _graph(rng: random.Random, n: int) -> dict:
    """A random DAG of n python components c0..c{n-1}: c_i reads c_{i-1}'s output and maybe
    another earlier field, so each component depends on every earlier one."""
    comps = {}
    for i in range(n):
        sources = ["x"] + [f"f{j}" for j in range(i)]
        inputs = sorted({sources[-1], rng.choice(sources)})
        comps[f"c{i}"] = {"kind": "python", "description": f"step {i}", "inputs": inputs,
                          "outputs": [f"f{i}"], "params": {"function": "fns:shout"}}
    comps[f"c{n - 1}"]["outputs"] = ["out"]
    return comps


def _with_graph(comps: dict) -> dict:
    out = copy.deepcopy(BASE)
    out["system"]["components"] = comps
    return out


def cycles(rng: random.Random) -> list[Case]:
    cases = []
    for _ in range(30):
        n = rng.randint(2, 6)
        comps = _graph(rng, n)
        i, j = sorted(rng.sample(range(n - 1), 2)) if n > 2 else (0, 0)
        # c_i now also reads c_j's output (j >= i): a cycle through c_i (a self-loop if i == j)
        comps[f"c{i}"]["inputs"] = sorted({*comps[f"c{i}"]["inputs"], f"f{j}"})
        cases.append(Case("cycle", _with_graph(comps),
                          says=["system.components", "form a cycle", f"c{i}"]))
    return cases


def missing_producers(rng: random.Random) -> list[Case]:
    cases = []
    for k in range(20):
        n = rng.randint(1, 5)
        comps = _graph(rng, n)
        victim = f"c{rng.randrange(n)}"
        ghost = f"ghost_{k}"
        comps[victim]["inputs"] = [*comps[victim]["inputs"], ghost]
        cases.append(Case("missing producer", _with_graph(comps),
                          says=[f"system.components.{victim}.inputs", ghost]))
    for k in range(5):  # the final output, then an output produced twice
        cases.append(Case("missing producer", _set(BASE, "system.final_output", f"nothing_{k}"),
                          says=["system.final_output", f"nothing_{k}"]))
        comps = _graph(rng, 3)
        comps["c1"]["outputs"] = ["f0"]
        cases.append(Case("output produced twice", _with_graph(comps),
                          says=["system.components.c1.outputs", "f0"]))
    return cases


BAD_DOTTED = ["no_such_module_xyz:load", "fns:no_such_function", "fns", "", "fns:",
              ":load", "os.path:no_such_thing", "no.such.pkg.mod:f"]


def bad_paths(rng: random.Random) -> list[Case]:
    cases = []
    for key in ("system.loader", "system.metric"):
        for v in BAD_DOTTED:
            cases.append(Case("bad dotted path (file)", _set(BASE, key, v), says=[key, repr(v)]))
            o = f"{key}={v}" if v else f"{key}=''"
            cases.append(Case("bad dotted path (override)", BASE, [o], source=o,
                              says=[key, repr(v)]))
    for v in ("no_such_kind", "no_such_module_xyz:Kind", "fns:NoSuchKind", "fns:shout"):
        key = "system.components.finish.kind"
        cases.append(Case("bad kind path", _set(BASE, key, v), says=[key, v]))
    for v in ("/no/such/dir/data.jsonl", "missing_data_file.jsonl", "../nowhere/x.json"):
        cases.append(Case("bad data.path (file)", _set(BASE, "data.path", v),
                          says=["data.path", repr(v)]))
        o = f"data.path={v}"
        cases.append(Case("bad data.path (override)", BASE, [o], source=o, says=["data.path", v]))
    return cases


def _corruptions(text: str, rng: random.Random):
    """Seeded edits of a valid YAML text, kept only when they break YAML syntax."""
    lines = text.splitlines()
    edits = [
        lambda ls, i: ls[:i] + ["\t" + ls[i]] + ls[i + 1:],  # a tab in the indentation
        lambda ls, i: ls[:i] + [ls[i] + " ]"] + ls[i + 1:],
        lambda ls, i: ls[:i] + [ls[i] + ": : x"] + ls[i + 1:],
        lambda ls, i: ls[:i] + [ls[i].replace(":", " [", 1)] + ls[i + 1:],
        lambda ls, i: ls[:i] + [ls[i] + ' "unterminated'] + ls[i + 1:],
        lambda ls, i: ls[:i] + ["   " + ls[i]] + ls[i + 1:],  # odd indentation
        lambda ls, i: ls[:i] + ["{" + ls[i]] + ls[i + 1:],
        lambda ls, i: ls[:i] + [ls[i] + " &a *b"] + ls[i + 1:],
        lambda ls, i: ls[:i] + ["- " + ls[i]] + ls[i + 1:],
    ]
    while True:
        i = rng.randrange(len(lines))
        new = rng.choice(edits)(lines, i)
        out = "\n".join(new) + "\n"
        try:
            yaml.safe_load(out)
        except yaml.YAMLError:
            yield out


def bad_yaml(rng: random.Random) -> list[Case]:
    text = yaml.safe_dump(BASE, sort_keys=False)
    gen = _corruptions(text, rng)
    cases = [Case("bad YAML", next(gen), says=["malformed YAML"]) for _ in range(30)]
    cases += [Case("bad YAML", t, says=[s]) for t, s in [
        ("- just\n- a list\n", "top level must be a mapping"),
        ("42\n", "top level must be a mapping"),
        ("", "missing required value"),
        ("defaults:\n  - lm: no_such_lm\n  - _self_\nname: x\n", "no_such_lm"),
        ("defaults: 5\nname: x\n", "defaults"),
    ]]
    return cases


BAD_OVERRIDES = [
    ("data.train_size", ["data.train_size"]),
    ("=5", []),
    ("data..train_size=1", []),
    ("data.train_size=[1,", []),
    ("data.train_size='open", []),
    ("lm=no_such_lm", ["lm", "no_such_lm"]),
    ("optimizer=adam", ["optimizer", "adam"]),
    ("reward=no_such_reward", ["reward", "no_such_reward"]),
    ("~data.colour", ["data.colour"]),
    ("+data.train_size=5", ["data.train_size"]),
    ("data.train_size=${no.such.key}", ["data.train_size", "no.such.key"]),
    ("data.train_size=${data.val_size", ["data.train_size"]),
    ("data.train_size=${oc.env:OPTIMAS_FUZZ_UNSET_VAR}", ["data.train_size",
                                                         "OPTIMAS_FUZZ_UNSET_VAR"]),
    ("data train_size=1", []),
    ("data.train_size==1", ["data.train_size"]),
    ("@data=1", []),
    ("data.train_size=1=2", ["data.train_size", "1=2"]),
    ("system.components.nope.inputs=[x]", ["system.components.nope"]),
    ("system.components=[]", ["system.components"]),
    ("data=5", ["data", "5"]),
    ("hydra/launcher=no_such_launcher", ["no_such_launcher"]),
    ("++data.test_size=abc", ["data.test_size", "abc"]),
    ("~system", ["system"]),
    ("eval.workers=${eval.workers}", ["eval.workers"]),
]


def bad_overrides(rng: random.Random) -> list[Case]:
    return [Case("bad override", BASE, [o], source=o, says=says) for o, says in BAD_OVERRIDES]


GENERATORS = [wrong_types, unknown_keys, cycles, missing_producers, bad_paths, bad_yaml,
              bad_overrides]


def all_cases() -> list[Case]:
    rng = random.Random(SEED)
    return [c for gen in GENERATORS for c in gen(rng)]


CASES = all_cases()


def check(case: Case, path: Path) -> str | None:
    """Run `optimas validate` on one case; None when the error is clear, else what is wrong."""
    text = case.config if isinstance(case.config, str) else yaml.safe_dump(case.config,
                                                                             sort_keys=False)
    path.write_text(text)
    result = runner.invoke(app, ["validate", str(path), *case.overrides], terminal_width=80)
    out = result.output
    lines = [line for line in out.splitlines() if line.strip()]
    if result.exit_code != 2:
        return f"exit code {result.exit_code}: {out[-300:]!r} {result.exception!r}"
    several = len(lines) > 1 and lines[0] == f"error: {len(lines) - 1} problems:"
    if "Traceback" in out or not lines[0].startswith("error: ") or (len(lines) > 1
                                                                     and not several):
        return f"not one error line, or one line per problem: {out!r}"
    where = f"override '{case.source}'" if case.source else str(path)
    for line in lines[1:] if several else lines:  # the fault's own problem: one of the lines
        if all(s in line for s in [where, *case.says]):
            return None
    return f"no line names {[where, *case.says]}: {lines!r}"


def test_at_least_200_cases_of_every_kind_deterministically():
    kinds = Counter(c.kind.split(" (")[0] for c in CASES)
    assert len(CASES) >= 200
    assert {"wrong type", "unknown key", "cycle", "missing producer", "bad dotted path",
            "bad data.path", "bad YAML", "bad override"} <= set(kinds)
    assert [c.id for c in all_cases()] == [c.id for c in CASES]  # seeded: the same every time


def test_every_malformed_config_gives_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative data paths resolve here (and at the project root)
    bad = {}
    for n, case in enumerate(CASES):
        problem = check(case, tmp_path / f"case_{n:03d}.yaml")
        if problem:
            bad[f"{n} {case.kind}: {case.overrides or case.says}"] = problem
    by_kind = Counter(c.kind for c in CASES)
    print(f"\nfuzzed {len(CASES)} configs: {dict(by_kind)}; unclear: {len(bad)}")
    assert not bad, "\n".join(f"{k}\n    {v}" for k, v in bad.items())
    record("config_fuzz", cases=len(CASES), clear=len(CASES) - len(bad),
           kinds=dict(Counter(c.kind.split(" (")[0] for c in CASES)))

