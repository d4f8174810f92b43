"""`--multirun` through Hydra's own launcher machinery, so launcher plugins work.

Every combination is composed and validated before the first job starts. Each
job then runs in `<sweep dir>/<job number>/` with its overrides in overrides.txt.
"""

from __future__ import annotations

import itertools
import sys
from datetime import datetime
from pathlib import Path

from optimas_cli.config import hydra_overrides, search_path
from optimas_cli.errors import ConfigError
from optimas_cli.methods import load_checked as load


def expand(overrides: list[str]) -> list[list[str]]:
    """Every combination of sweep overrides (`a=1,2 b=x,y`), in Hydra's order."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    try:
        parsed = parser.parse_overrides(overrides)
    except HydraException as e:
        raise ConfigError(f"override: {str(e).strip().splitlines()[0]}") from None
    axes: list[list[str]] = []
    for o in parsed:
        if o.key_or_group.startswith("hydra"):
            continue
        if o.is_sweep_override():
            key = o.get_key_element()
            axes.append([f"{key}={v}" for v in o.sweep_string_iterator()])
        else:
            axes.append([o.input_line])
    return [list(c) for c in itertools.product(*axes)]


def launch(command: str, config_path: str, overrides: list[str], *, sweep_dir: str | None = None,
           show_progress: bool = False) -> Path:
    """Validate every combination, then run them as a Hydra multirun; returns the sweep dir."""
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import DictConfig, OmegaConf

    path = Path(config_path).resolve()
    combos = expand(overrides)
    first = None
    for combo in combos:
        composed = load(path, combo)
        first = first or composed
    if sweep_dir is None:
        stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
        sweep_dir = str(Path(first.run.run_root) / first.run.system.name / f"{stamp}_multirun")
    sweep = Path(sweep_dir).resolve()

    def job(cfg: DictConfig) -> str:
        from optimas_cli.config import validate
        from optimas_cli.jobs import execute

        hc = HydraConfig.get()
        choices = {k: v for k, v in OmegaConf.to_container(hc.runtime.choices).items()
                   if not k.startswith("hydra/") and v is not None}
        cfg = OmegaConf.create(OmegaConf.to_container(cfg))  # unlocked copy
        cfg.run_dir = hc.runtime.output_dir
        # record the overrides as the user wrote them (we add ++ for schema-default keys)
        overrides = [o[2:] if o.startswith("++") else o for o in hc.overrides.task]
        composed = validate(cfg, path, overrides, choices)
        run_path, _ = execute(command, composed, show_progress=show_progress)
        return str(run_path)

    argv = ["optimas", "--multirun", *hydra_overrides(overrides, path),
            f"hydra.searchpath=[{','.join(search_path(path))}]",
            f"hydra.sweep.dir={sweep}", "hydra.sweep.subdir=${hydra.job.num}",
            "hydra.job.chdir=False"]
    app = hydra.main(config_path=str(path.parent), config_name=path.stem, version_base="1.3")(job)
    saved = sys.argv
    sys.argv = argv
    try:
        app()
    finally:
        sys.argv = saved
    return sweep
