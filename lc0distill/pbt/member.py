"""One PBT member: our training loop as a Ray Tune function trainable.

The member trains in its own folder (members/member-N, an ordinary run folder: metrics.jsonl, checkpoint.pt,
final.pt/.pb.gz) a segment of pbt.perturb_every steps at a time; after each it evaluates on the held-out data,
writes its atomic checkpoint and reports the metric to Tune with that checkpoint. Tune starts the function
again (same process when it can) when a member exploits, with the better member's checkpoint and the explored
hyperparameters, and when a killed experiment is restored, with the member's own last checkpoint. Each start
is logged in metrics.jsonl as a "pbt" record (event fresh, resume or exploit; for an exploit the source member,
its step, and the fingerprints of the weights it saved and of those loaded here, which must be equal).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from lc0distill.checkpoint import LATEST
from lc0distill.config import load_config
from lc0distill.errors import Lc0DistillError
from lc0distill.pbt.config import PbtRunConfig
from lc0distill.pbt.hyper import (exploit_stream_offset, fresh_stream_offset, member_config, member_name,
                                  search_of, teacher_lambdas)

MEMBER_FILE = "member.json"  # beside checkpoint.pt in a reported checkpoint: who saved it, at which step


def member_index(trial_id: str) -> int:
    """Tune numbers a run's trials <experiment>_00000, _00001, ...: the member's index (kept on restore)."""
    try:
        return int(trial_id.rsplit("_", 1)[1])
    except (IndexError, ValueError):
        raise Lc0DistillError(f"unexpected Ray Tune trial id {trial_id!r}") from None


def fingerprint(run) -> str:
    """sha256 of the student's weights and buffers and the optimizer's state: equal only for equal states."""
    digest = hashlib.sha256()
    tensors = [(f"model.{name}", value) for name, value in run.student.state_dict().items()]
    for index, state in sorted(run.optimizer.state_dict()["state"].items()):
        tensors += [(f"optimizer.{index}.{key}", value) for key, value in sorted(state.items())
                    if isinstance(value, torch.Tensor)]
    if run.swa is not None:
        tensors += [(f"swa.{name}", value) for name, value in run.swa.model.state_dict().items()]
    for name, value in tensors:
        digest.update(name.encode())
        digest.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _install_checkpoint(source: Path, run_dir: Path) -> None:
    """The reported checkpoint becomes this member's checkpoint.pt (copied, then renamed: atomic)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    temporary = run_dir / f".{LATEST}.pbt.tmp"
    shutil.copyfile(source / LATEST, temporary)
    os.replace(temporary, run_dir / LATEST)


def _log_to(path: Path):
    def log(message: str) -> None:
        with open(path, "a") as out:
            out.write(message + "\n")
    return log


def train_member(trial_config: dict) -> None:
    """The Tune function trainable. trial_config: {"recipe": the PBT recipe's path, "cwd": the driver's folder
    (relative paths in the recipe are from there), "hyper": {name: value}}."""
    from ray import tune

    from lc0distill.train import DataStream, Throughput, open_run, train_until

    _enter_driver_folder(trial_config.get("cwd"))
    recipe: PbtRunConfig = load_config(trial_config["recipe"], validate=PbtRunConfig)
    search, hyper = search_of(recipe), dict(trial_config["hyper"])
    index = member_index(tune.get_context().get_trial_id())
    name = member_name(index)
    config = member_config(recipe, search, hyper, index)
    run_dir = Path(config.train.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint, origin = tune.get_checkpoint(), None
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            origin = json.loads((Path(folder) / MEMBER_FILE).read_text())
            _install_checkpoint(Path(folder), run_dir)
    elif (run_dir / LATEST).exists():  # Tune holds no checkpoint of this member: it starts again from step 0
        (run_dir / LATEST).unlink()
    run = open_run(config, log=_log_to(run_dir / "member.log"), resume=checkpoint is not None)
    event = _start_event(run, origin, name, hyper, search)
    if event["event"] == "fresh":
        run.stream = DataStream(start=0, seed_offset=fresh_stream_offset(index))
    if event["event"] == "exploit":  # another member's data position: read a stream of this member's own
        run.stream = DataStream(start=run.batches_consumed,
                                seed_offset=exploit_stream_offset(index, run.batches_consumed))
    run.record("pbt", event)
    batches, throughput = run.batches(), Throughput.now()
    steps, every = config.train.steps, recipe.pbt.perturb_every
    try:
        while run.step < steps:
            train_until(run, batches, min((run.step // every + 1) * every, steps), throughput)
            if run.step >= steps:  # before the last report: Tune ends the member in it
                run.final_outputs()
            _report(tune, run, name, hyper, teacher_lambdas(hyper, search), recipe.pbt.metric)
    finally:
        batches.close()
        run.close_logs()


def _enter_driver_folder(folder: str | None) -> None:
    """Members work in the driver's folder, where the recipe's relative paths (data, teachers, run_dir) point;
    on a Ray cluster it must exist on every node (shared storage at the same path)."""
    if folder is None:
        return
    if not Path(folder).is_dir():
        raise Lc0DistillError(f"the driver's folder {folder} is not on this Ray node ({os.uname().nodename}): "
                              "every node needs the run's folder and the recipe's paths at the same place "
                              "(shared storage)")
    os.chdir(folder)


def _start_event(run, origin: dict | None, name: str, hyper: dict, search) -> dict:
    event = {"event": "fresh", "member": name, "hyperparameters": hyper,
             "lambdas": teacher_lambdas(hyper, search), "fingerprint": fingerprint(run)}
    if origin is None:
        return event
    if origin["member"] == name:
        return {**event, "event": "resume"}
    if origin["fingerprint"] != event["fingerprint"]:
        raise Lc0DistillError(f"{name}: the checkpoint of {origin['member']} at step {origin['step']} loaded as "
                              f"other weights (fingerprint {event['fingerprint'][:12]}, saved "
                              f"{origin['fingerprint'][:12]})")
    return {**event, "event": "exploit", "source": origin["member"], "source_step": origin["step"],
            "source_fingerprint": origin["fingerprint"], "source_hyperparameters": origin["hyperparameters"]}


def _report(tune, run, name: str, hyper: dict, lambdas: dict, metric: str) -> None:
    """Evaluate, checkpoint, and hand Tune the metric with the checkpoint (copied by Tune into its storage)."""
    metrics = run.evaluate()
    if metrics.get(metric) is None:
        raise Lc0DistillError(f"{name}: no held-out {metric} at step {run.step} (the held-out data is empty, or "
                              f"{metric} needs a teacher): PBT ranks members by it")
    run.save()
    mark = {"member": name, "step": run.step, "fingerprint": fingerprint(run), "hyperparameters": hyper}
    run.record("pbt", {"event": "report", **mark, "lambdas": lambdas, metric: metrics[metric]})
    folder = Path(tempfile.mkdtemp(prefix="lc0distill-pbt-"))
    try:
        shutil.copyfile(run.run_dir / LATEST, folder / LATEST)
        (folder / MEMBER_FILE).write_text(json.dumps(mark))
        result = {"step": run.step, **{k: v for k, v in metrics.items() if v is not None},
                  **{f"hyper_{k}": v for k, v in hyper.items()}}
        tune.report(result, checkpoint=tune.Checkpoint.from_directory(str(folder)))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
