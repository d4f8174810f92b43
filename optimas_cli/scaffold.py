"""`optimas init NAME [--dir DIR]`: a working starter system of one's own, in DIR/NAME.

It writes three files, a system that `optimas validate`, `evaluate` and `run` take at once,
offline, on the embedded default model (README, "Your own system"):

    NAME.yaml       the run config: the defaults list of the project's groups, the system
                    (an llm component that answers, a python component that normalizes), the
                    built-in JSONL loader with its field mapping, and a small budget
    NAME.py         the python component's function and the metric (imported by dotted
                    path, `NAME:normalize`, from the working directory)
    capitals.jsonl  ten countries and their capitals

NAME is the module's name too, so it must be a Python identifier that no installed module
already has (`optimas init json` would shadow the standard library's json).
"""

from __future__ import annotations

import importlib.util
import keyword
import string
from pathlib import Path

import typer

DATA_FILE = "capitals.jsonl"  # (CONFIG names it too)

# (id, country, capital): SmolLM2-135M names 6 of them; it answers the largest city for
# Australia, Brazil and Turkey and makes one up for Morocco; the larger embedded models
# miss others: room to improve
CAPITALS = [("ke", "Kenya", "Nairobi"), ("au", "Australia", "Canberra"),
            ("ca", "Canada", "Ottawa"), ("tr", "Turkey", "Ankara"), ("br", "Brazil", "Brasília"),
            ("ng", "Nigeria", "Abuja"), ("ma", "Morocco", "Rabat"), ("pe", "Peru", "Lima"),
            ("no", "Norway", "Oslo"), ("eg", "Egypt", "Cairo")]

CONFIG = string.Template("""\
# $name: a starter system written by `optimas init $name`. Run every command from this
# folder (data.path and the dotted paths below are read from the working directory):
#   optimas validate $name.yaml     check it; runs nothing
#   optimas evaluate $name.yaml     score the starting system on the test split
#   optimas run $name.yaml          optimize it, then test the initial and the final system
# Any key below can be set on the command line (`optimas run $name.yaml optimizer.num_iterations=1`);
# every key left out has the schema's default: `optimas options` lists them all.

defaults:             # the project's config groups, found wherever this file lives
  - lm: smollm2       # the embedded SmolLM2-135M: offline, no key (lm=openai: an API model)
  - optimizer: optimas
  - reward: minilm
  - _self_            # this file's keys override the groups'

name: $name           # run directories land in runs/$name/<timestamp>/
system:
  name: $name
  description: Names the capital city of a country.
  inputs: [country]           # each example's inputs (data.inputs maps them to columns)
  final_output: answer        # the field the metric judges
  loader: optimas_cli.loaders.jsonl   # built-in: one JSON object per line, mapped by data.*
  metric: $name:exact_capital         # $name.py: (example, fields) -> {"score": float}
  components:
    answerer:
      kind: llm
      description: Names the capital city of a country.
      inputs: [country]
      outputs: [capital]
      params: {max_tokens: 12}          # a city name, or a short sentence naming it
      variables:                        # what the optimizer may change
        prompt:
          type: prompt
          instruction: Name the capital city of the country.
          demos: []                     # demonstrations the optimizer may add from good runs
        model:                          # the lm group's model; lm=... switches both
          type: model
          value: $${lm.model}
          choices: $${lm.choices}      # the embedded ladder (lm group smollm2: all four)
    normalizer:
      kind: python
      description: Cuts the model's reply down to a bare city name.
      inputs: [capital]
      outputs: [answer]
      params: {function: "$name:normalize"}   # no variables: nothing here to optimize

data:
  path: capitals.jsonl        # relative: from the working directory
  inputs: {country: country}  # system input -> the JSONL key that holds it
  target: capital             # example.target = {"capital": row["capital"]}
  id: id                      # the key of each row's id (default: its line number)
  train_size: 4               # what optimization draws its inputs from
  val_size: 3                 # each change is kept only if it scores higher here
  test_size: 3                # the reported before/after scores (4 + 3 + 3 = the 10 rows)
eval: {workers: 2}

# A small budget, so that `optimas run` ends in a few minutes on a laptop CPU. For a
# real dataset: larger splits (train 30+, val 20+, test 30+) and budget_system_runs 200+.
optimizer:
  budget_system_runs: 60      # system runs the optimizer may spend (test runs not counted)
  num_iterations: 2           # at most this many select -> collect -> update -> validate
  min_pairs: 2                # optimize a component once its collection gave 2 preference pairs
  collect: {num_inputs: 4, num_samples: 2, workers: 2}   # rollouts per collection
  update: {num_candidates: 2, per_component_train_size: 4, max_demos: 2}
reward: {epochs: 2}           # the local reward models' training epochs
""")

MODULE = '''\
"""The code of the starter system `{name}` ({name}.yaml names it as {name}:...).

The llm component `answerer` needs no code, and the built-in JSONL loader reads
{data}; what is left is the python component's function and the metric.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from optimas_cli.api import Example


def normalize(capital: str) -> dict[str, str]:
    """The `normalizer` component. It is called with its inputs (here `capital`, the
    answerer's output) and the values of its variables (none here) as keyword arguments,
    and returns a dict with a value per output (with one output, a bare value will do)."""
    lines = capital.strip().splitlines()
    text = lines[0] if lines else ""
    said = re.match(r"the capital (?:city )?of .+? is (.+)", text, re.IGNORECASE)
    if said:  # "The capital of Kenya is Nairobi." -> "Nairobi."
        text = said.group(1)
    text = re.split(r"[,;(]| is ", text)[0]  # "Nairobi, Kenya", "Nairobi is the ..." -> "Nairobi"
    return {{"answer": text.strip(" .!?\\"'")}}


def _plain(text: str) -> str:
    """Case and accents folded: "Brasília" and "brasilia" are the same city."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return ascii_text.casefold().strip()


def exact_capital(example: Example, fields: dict[str, Any]) -> dict[str, float]:
    """The metric. `example.target` is {{"capital": ...}} (data.target), `fields` holds the
    system inputs and every component's outputs. "score" is what optimization maximizes;
    any other key is reported beside it."""
    answer = str(fields.get("answer", ""))
    right = _plain(answer) == _plain(example.target["capital"])
    return {{"score": float(right), "answered": float(bool(answer))}}
'''


def data_lines() -> str:
    import json

    return "".join(json.dumps({"id": i, "country": c, "capital": cap}, ensure_ascii=False) + "\n"
                   for i, c, cap in CAPITALS)


def name_problem(name: str) -> str | None:
    """Why NAME cannot name a starter (None: it can): it is the module's name too."""
    if not name.isidentifier() or keyword.iskeyword(name):
        return (f"NAME {name!r} must be a Python identifier (letters, digits, underscores; "
                f"not starting with a digit): it names the module {name}.py")
    spec = importlib.util.find_spec(name)
    if spec is not None and spec.origin is not None:  # (a folder of that name is no module)
        return (f"NAME {name!r} is already an importable module; {name}.py would shadow it: "
                f"choose another name")
    return None


def write_starter(name: str, parent: Path) -> Path:
    """Write the starter system `name` into parent/name; ValueError (one line) when NAME is
    unusable or parent/name exists."""
    root = parent / name
    if root.exists() or root.is_symlink():
        raise ValueError(f"{root} already exists: optimas init writes a new directory only "
                         f"(choose another NAME or --dir)")
    why = name_problem(name)
    if why:
        raise ValueError(why)
    root.mkdir(parents=True)
    (root / f"{name}.yaml").write_text(CONFIG.substitute(name=name))
    (root / f"{name}.py").write_text(MODULE.format(name=name, data=DATA_FILE))
    (root / DATA_FILE).write_text(data_lines(), encoding="utf-8")
    return root


NAME = typer.Argument(..., help="The system's name: its folder, config and module (mysys)")
DIR = typer.Option(Path("."), "--dir", help="Where to create the folder NAME")


def register(app: typer.Typer) -> None:
    """Add `optimas init` to the typer app."""

    @app.command(name="init")
    def init_command(name: str = NAME, parent: Path = DIR):
        """Write a working starter system into DIR/NAME: NAME.yaml (an llm and a python
        component, the built-in JSONL loader, a small budget), NAME.py (the python function
        and the metric) and a 10-row capitals.jsonl. Refuses an existing directory.

        Example: `optimas init mysys && cd mysys && optimas run mysys.yaml`
        """
        from rich.markup import escape

        from optimas_cli.console import make_console

        try:
            root = write_starter(name, parent)
        except (ValueError, OSError) as e:
            make_console(stderr=True).print(f"[red]error:[/] {escape(str(e))}", soft_wrap=True)
            raise typer.Exit(2) from None
        files = ", ".join(sorted(p.name for p in root.iterdir()))
        typer.echo(f"wrote {root}/: {files}\nnext:\n  cd {root}\n  optimas validate "
                   f"{name}.yaml\n  optimas evaluate {name}.yaml\n  optimas run {name}.yaml")
