"""What a user's own code touches, in one place: import from here.

A system's config names three kinds of user code by dotted path (`pkg.mod:name`):

`system.loader`: a `Loader`, `(DataConfig) -> Dataset`. It reads `data.path` (and any
  other `data.*` key) and returns `Dataset(examples=[Example(id, inputs, target), ...])`;
  `inputs` has a value per name in `system.inputs`. Anything else it returns fails the
  run in one line naming the loader. Data in a JSONL or CSV file, or a Hugging Face
  dataset saved to disk, needs no loader of its own: `optimas_cli.loaders.jsonl` (`.csv`,
  `.hf_disk`) map columns to inputs with `data.inputs`, `data.target` and `data.id`.

`system.metric`: a `Metric`, `(example: Example, fields: dict[str, Any]) ->
  dict[str, float]` with a required "score". `fields` holds the system inputs and every
  component's outputs. A metric that raises, or returns anything else, fails that
  example (score 0, recorded in failures.jsonl with the example's id).

`kind:` of a component: `python` calls a plain function (`params.function`) with the
  component's inputs and variable values as keyword arguments; a class of your own
  subclasses `BaseComponent` and implements `forward(inputs, values, call)`, returning a
  dict with a value per output; `call.complete(LMRequest(...))` asks the LM.

The names below are the project's own classes, re-exported, not copies.
"""

from __future__ import annotations

from optimas_cli.components.base import BaseComponent
from optimas_cli.data import Dataset, Example, Loader
from optimas_cli.graph import Call
from optimas_cli.lm.base import LMRequest, LMResponse
from optimas_cli.metrics import Metric
from optimas_cli.schema import DataConfig

__all__ = ["BaseComponent", "Call", "DataConfig", "Dataset", "Example", "LMRequest",
           "LMResponse", "Loader", "Metric"]
