"""`lc0distill pbt`: a population of members (lc0distill.pbt.member) under Ray Tune's PopulationBasedTraining.

The experiment's folder is the recipe's train.run_dir:
    recipe.yaml       the recipe as run (members read it; a restored run must be given the same recipe)
    members/member-N  each member's run folder (metrics.jsonl with its "pbt" events, checkpoint.pt, final nets)
    ray/pbt           Ray Tune's results folder (trials, their checkpoints, pbt_global.txt, experiment state)
    ray/restores.json how many times the run was restored (each start's explore draws differ); Tune's
                      pbt_global.txt of the starts before restore N is kept as pbt_global.before-restore-N.txt
    pbt.json, pbt.md  the summary and the table of each member's hyperparameters over steps (lc0distill.pbt.report)
    pbt.png           each member's lambda_k, lr and held-out metric over steps
    best.pb.gz, best.pt  the best member's final net
A run killed at any point is started again with the same command: Tune restores the experiment and every
member continues from its last reported checkpoint. A finished run started again is summarised again.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Callable

from lc0distill.config import dump_config, load_config
from lc0distill.errors import Lc0DistillError
from lc0distill.pbt.config import PbtRunConfig
from lc0distill.pbt.hyper import (Explorer, initial_population, member_config, read_restores, restores_file,
                                  search_of, write_restores)
from lc0distill.pbt.member import member_index
from lc0distill.pbt.report import finished, summarise
from lc0distill.progress import track
from lc0distill.shards.select import select_sources

EXPERIMENT = "pbt"
RECIPE = "recipe.yaml"

# Tune's callbacks are pickled with the experiment; the progress bar is not, so they find it here.
_PROGRESS: dict = {}


def run_pbt(config: PbtRunConfig, ray_address: str | None = None, fresh: bool = False,
            log: Callable[[str], None] = print) -> dict:
    """Run (or resume) the experiment to the end; the summary (pbt.json's content)."""
    search = search_of(config)
    population = initial_population(config, search, config.pbt.population)
    for index, hyper in enumerate(population):  # every member's config is valid before Ray starts
        member_config(config, search, hyper, index)
    if not select_sources(config.data).train:
        raise Lc0DistillError(f"no training chunks in {', '.join(config.data.paths)}")
    run_dir = Path(config.train.run_dir).resolve()
    recipe = _write_recipe(config, run_dir, fresh)
    if not fresh and (run_dir / "ray" / EXPERIMENT).is_dir() and finished(run_dir, config):
        log(f"the PBT run in {run_dir} has finished: its summary again (--fresh starts it anew)")
        return summarise(run_dir, config)
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")  # members keep the driver's folder: relative paths work
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: Tune prints no tables
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    # Tune saves the experiment's state (which checkpoint each member is at) at most this often: a kill loses
    # no more than this (its default, 10 s or more, can lose every member's progress in a short run)
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")
    import ray
    from ray import tune
    from ray.tune.schedulers import PopulationBasedTraining

    _start_ray(ray, ray_address)
    _quiet_duplicate_checkpoint_errors()
    try:
        experiment = run_dir / "ray" / EXPERIMENT
        trainable = tune.with_resources(_trainable(), {"cpu": config.pbt.cpus_per_member,
                                                      "gpu": config.pbt.gpus_per_member})
        if tune.Tuner.can_restore(str(experiment)):
            if config.pbt.synch:
                raise Lc0DistillError(f"{run_dir}: a synchronous PBT run (pbt.synch: true) cannot be resumed: Ray "
                                      "2.60's scheduler waits forever for members restored at different steps. "
                                      "Start again with --fresh (pbt.synch: false runs resume)")
            log(f"resuming the PBT run in {run_dir}")
            _keep_global_log(experiment, _count_restore(run_dir))
            tuner = tune.Tuner.restore(str(experiment), trainable=trainable, resume_unfinished=True,
                                       resume_errored=True)
        else:
            write_restores(run_dir, 0)
            tuner = _new_tuner(tune, PopulationBasedTraining, trainable, config, search, population, recipe)
        total = config.pbt.population * config.train.steps
        with track("pbt", total=total, unit="steps", log=log) as bar:
            _PROGRESS.update(bar=bar, steps={}, batch_size=config.data.batch_size)
            try:
                grid = tuner.fit()
            finally:
                _PROGRESS.clear()
    finally:
        ray.shutdown()
    _raise_member_errors(grid)
    return summarise(run_dir, config)


def _start_ray(ray, address: str | None) -> None:
    """Ray on this machine (address None) or the cluster at `address`; a cluster that cannot be reached is a
    user's error, said in one line."""
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                 configure_logging=True, ignore_reinit_error=True)
    except (ConnectionError, RuntimeError, ValueError) as error:
        if address is None:
            raise
        text = " ".join(str(error).split())[:300]
        auth = "" if os.environ.get("RAY_AUTH_MODE") else (
            "; a cluster started with token authentication (ray start's default) is joined with RAY_AUTH_MODE=token "
            "in the environment and its token in ~/.ray/auth_token or RAY_AUTH_TOKEN")
        raise Lc0DistillError(f"--ray-address {address}: no Ray cluster could be joined there ({text}); start "
                              f"one with `ray start --head` and give the address it prints{auth}") from None


class _DuplicateCheckpointFilter(logging.Filter):
    """Drops Tune's traceback for deleting a checkpoint already deleted: a checkpoint PBT registered twice
    (see num_to_keep) is deleted once per registration; the second finds no folder, which loses nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (isinstance(error, FileNotFoundError) and "Error handling checkpoint" in str(record.msg))


def _quiet_duplicate_checkpoint_errors() -> None:
    logger = logging.getLogger("ray.tune.execution.tune_controller")
    if not any(isinstance(f, _DuplicateCheckpointFilter) for f in logger.filters):
        logger.addFilter(_DuplicateCheckpointFilter())


def _trainable():
    from lc0distill.pbt.member import train_member

    return train_member


def _new_tuner(tune, scheduler_class, trainable, config: PbtRunConfig, search, population, recipe: Path):
    pbt, run_dir = config.pbt, Path(config.train.run_dir).resolve()
    scheduler = scheduler_class(time_attr="step", perturbation_interval=pbt.perturb_every,
                                custom_explore_fn=Explorer(search, restores_file(run_dir)),
                                quantile_fraction=pbt.quantile_fraction,
                                resample_probability=pbt.resample_probability,
                                perturbation_factors=tuple(pbt.perturbation_factors), synch=pbt.synch)
    return tune.Tuner(
        trainable,
        param_space={"recipe": str(recipe), "cwd": str(Path.cwd()), "hyper": tune.grid_search(population)},
        tune_config=tune.TuneConfig(scheduler=scheduler, num_samples=1, metric=pbt.metric, mode=pbt.mode,
                                    reuse_actors=True, trial_dirname_creator=_trial_folder),
        run_config=tune.RunConfig(
            name=EXPERIMENT, storage_path=str(run_dir / "ray"),
            stop={"step": config.train.steps}, verbose=0, callbacks=[_ProgressCallback()],
            # PBT registers a donor's reported checkpoint a second time when it picks it for cloning, and Tune
            # counts both towards num_to_keep: twice the count keeps pbt.keep_checkpoints distinct ones
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2 * pbt.keep_checkpoints),
            failure_config=tune.FailureConfig(max_failures=0),
            # Tune writes its state and pbt_global.txt in a staging folder and copies them into ray/ at most
            # every sync_period (default 300 s): a kill would lose the exploits of the last minutes from the log
            sync_config=tune.SyncConfig(sync_period=1)))


def _count_restore(run_dir: Path) -> int:
    """The restore's number (1 for the first), counted in ray/restores.json."""
    restores = read_restores(restores_file(run_dir)) + 1
    write_restores(run_dir, restores)
    return restores


def _keep_global_log(experiment: Path, restores: int) -> None:
    """Tune starts pbt_global.txt (every exploit: who cloned whom, the configs) anew at a restore: the log of
    the starts before it is kept beside it, as pbt_global.before-restore-N.txt."""
    log = experiment / "pbt_global.txt"
    if log.is_file():
        shutil.copyfile(log, experiment / f"pbt_global.before-restore-{restores}.txt")


def _trial_folder(trial) -> str:
    """Ray's folder of a trial: the member's name (not its hyperparameters, which change)."""
    return f"member-{member_index(trial.trial_id)}_{trial.trial_id}"


def _write_recipe(config: PbtRunConfig, run_dir: Path, fresh: bool) -> Path:
    """recipe.yaml in the run folder; an existing one (a run to resume) must be this recipe."""
    recipe = run_dir / RECIPE
    text = dump_config(config)
    if recipe.exists() and not fresh:
        if load_config(recipe, validate=PbtRunConfig) != config:
            raise Lc0DistillError(f"{run_dir} holds a PBT run of another recipe ({recipe}): give the same recipe "
                                  f"to resume it, another train.run_dir, or --fresh to start again")
        return recipe
    if fresh and run_dir.exists():
        for name in ("ray", "members", RECIPE):
            path = run_dir / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    recipe.write_text(text)
    return recipe


def _raise_member_errors(grid) -> None:
    if not grid.errors:
        return
    lines = []
    for error in grid.errors:
        text = " ".join(str(error).split())
        lines.append(text[-400:])
    raise Lc0DistillError(f"{len(grid.errors)} PBT member(s) failed: " + " | ".join(lines))


def _ray_callback_base():
    from ray.tune import Callback

    return Callback


class _ProgressCallback(_ray_callback_base()):
    """Moves the driver's progress bar as members report: steps summed over the population, positions/s
    from the positions every member has trained (steps x batch size), the latest report beside it."""

    def on_trial_result(self, iteration, trials, trial, result, **info):
        bar = _PROGRESS.get("bar")
        if bar is None:
            return
        steps = _PROGRESS["steps"]
        steps[trial.trial_id] = int(result.get("step", 0))
        done = sum(steps.values())
        metric = result.get("policy_loss")
        status = f"member-{member_index(trial.trial_id)} at step {steps[trial.trial_id]}"
        if metric is not None:
            status += f": held-out policy loss {metric:.4f}"
        bar.update(done, positions=done * _PROGRESS.get("batch_size", 0), info=status)
