"""`hydra/launcher=ray`: each job of a sweep is a Ray task, on a local Ray or a cluster.

What the `hydra-ray-launcher` package's local mode does, without its dependency pins: every
release of it requires cloudpickle<3 (for its AWS mode, which pickles jobs to ship them),
while dspy and joblib require cloudpickle>=3, so pip cannot install it beside optimas-cli.
This plugin needs only `ray` (`pip install 'optimas-cli[ray]'`) and takes the same
settings: `hydra.launcher.ray.init.*` are ray.init's arguments (address: null starts a
local Ray; num_cpus, ...), `hydra.launcher.ray.remote.*` ray.remote's (num_cpus per job,
...). It registers under the same name, so do not install both.
"""

# No `from __future__ import annotations`: Hydra's plugin scan runs this module without
# registering it in sys.modules, where dataclasses would look string annotations up.
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)
# Ray's default object store takes 30% of memory; a sweep's jobs pass only their configs.
OBJECT_STORE_BYTES = 78643200


@dataclass
class RayConf:
    # address null: start a local Ray; num_cpus null: all cores (listed so that a plain
    # override sets it; other ray.init arguments take a '+')
    init: dict[str, Any] = field(default_factory=lambda: {"address": None, "num_cpus": None})
    remote: dict[str, Any] = field(default_factory=dict)


@dataclass
class RayLauncherConf:
    _target_: str = "hydra_plugins.optimas_ray_launcher.ray_launcher.RayLauncher"
    ray: RayConf = field(default_factory=RayConf)


ConfigStore.instance().store(group="hydra/launcher", name="ray", node=RayLauncherConf,
                             provider="optimas_ray_launcher")


def _run_job(hydra_context: HydraContext, sweep_config: DictConfig, task_function: TaskFunction,
             singleton_state: dict[Any, Any]) -> JobReturn:
    """One job, inside a Ray worker: Hydra's globals as the driver had them, then the task."""
    setup_globals()
    Singleton.set_state(singleton_state)
    HydraConfig.instance().set_config(sweep_config)
    return run_job(hydra_context=hydra_context, task_function=task_function, config=sweep_config,
                   job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")


class RayLauncher(Launcher):
    def __init__(self, ray: DictConfig) -> None:
        self.ray_cfg = ray
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None
        self.config: DictConfig | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]],
               initial_job_idx: int) -> Sequence[JobReturn]:
        try:
            import ray
        except ImportError:
            raise ImportError("hydra/launcher=ray needs Ray: pip install 'optimas-cli[ray]'") \
                from None
        assert self.config is not None and self.hydra_context is not None
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        init = OmegaConf.to_container(self.ray_cfg.init, resolve=True)
        init.setdefault("object_store_memory", OBJECT_STORE_BYTES)
        if not ray.is_initialized():
            log.info("Starting Ray: ray.init(%s)", init)
            ray.init(**init)
        remote = OmegaConf.to_container(self.ray_cfg.remote, resolve=True)
        task = ray.remote(**remote)(_run_job) if remote else ray.remote(_run_job)
        log.info("Ray launcher: %d jobs", len(job_overrides))
        futures = []
        for idx, overrides in enumerate(job_overrides, initial_job_idx):
            log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
            sweep_config = self.hydra_context.config_loader.load_sweep_config(
                self.config, list(overrides))
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = f"ray_job_{idx}"
                sweep_config.hydra.job.num = idx
            futures.append(task.remote(self.hydra_context, sweep_config, self.task_function,
                                       Singleton.get_state()))
        return ray.get(futures)
