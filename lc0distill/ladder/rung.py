"""One rung of the ladder: a student of one size trained with the rung's recipe (a killed run resumes; a
finished rung is never trained again), its best net exported for lc0, and its metrics on the held-out games.
What is done is kept in RUNG/rung.json, keyed by the recipe's digest."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch

from lc0distill.chunks.config import DataConfig, make_loader
from lc0distill.errors import Lc0DistillError
from lc0distill.evaluate import evaluate_net
from lc0distill.fileio import read_json, read_records, write_json
from lc0distill.ladder.plan import LadderPlan, config_digest
from lc0distill.lc0.weights import write_net
from lc0distill.models.net import SEResNet
from lc0distill.nets import load_net
from lc0distill.shards.select import every_source

RUNG_FILE = "rung.json"
STUDENT_FILE = "student.pb.gz"


def parameters(net: SEResNet) -> int:
    return sum(p.numel() for p in net.parameters())


def held_out_metrics(net, paths: tuple[str, ...], positions: int) -> dict:
    """Policy loss, top-1 and value metrics of `net` on every position of the held-out games."""
    selected = every_source(list(paths))
    if not selected.test:
        raise Lc0DistillError(f"--held-out {' '.join(paths)}: no chunks found")
    data = DataConfig(paths=list(paths), batch_size=512, shuffle_buffer=0, workers=0)
    loader = make_loader(data, selected.test, passes=1, sample_rate=1, origin_name=selected.origin_name)
    with torch.no_grad():
        return evaluate_net(net, iter(loader), positions, name=str(getattr(net, "name", "the net")))


def train_rate(run_dir: Path) -> float | None:
    """Positions/s over the run's logged windows (every session of a resumed run)."""
    rates = [r["positions_per_second"] for r in read_records(run_dir / "metrics.jsonl", "train")
             if r.get("positions_per_second")]
    return sum(rates) / len(rates) if rates else None


def build_rung(plan: LadderPlan, size: str, log: Callable[[str], None]) -> dict:
    """The rung's record (rung.json): trained, exported and scored, each done once."""
    from lc0distill.train import train

    config = plan.rung_config(size)
    folder = plan.rung_dir(size)
    digest = config_digest(config)
    record = read_json(folder / RUNG_FILE)
    if record and record.get("recipe") != digest:
        raise Lc0DistillError(f"{folder}: trained with another recipe (digest {record.get('recipe')}, now {digest}): "
                              f"give another --out, or delete the folder to train it again")
    if "trained" not in record:
        log(f"rung {size}: training ({config.train.steps:,} steps)")
        started = time.perf_counter()
        result = train(config, log=log)
        kept = read_json(folder / "best.json")
        record = {"size": size, "recipe": digest, "trained": {
            "steps": result.steps, "seconds_this_session": round(time.perf_counter() - started, 1),
            "positions_per_second": train_rate(folder), "best_step": kept.get("step")}}
        write_json(folder / RUNG_FILE, record)
    net_path = folder / STUDENT_FILE
    if "net" not in record:
        best = folder / "best.pt" if (folder / "best.pt").is_file() else folder / "final.pt"
        net = load_net(best)
        write_net(net, net_path, training_steps=record["trained"]["steps"])
        record["net"] = {"file": STUDENT_FILE, "from": best.name, "parameters": parameters(net)}
        write_json(folder / RUNG_FILE, record)
    if "held_out" not in record or record.get("held_out_paths") != list(plan.held_out):  # scored on these games
        log(f"rung {size}: scoring on the held-out games")
        record["held_out"] = held_out_metrics(load_net(net_path), plan.held_out, plan.held_out_positions)
        record["held_out_paths"] = list(plan.held_out)
        write_json(folder / RUNG_FILE, record)
    return record


def teacher_record(plan: LadderPlan, log: Callable[[str], None]) -> dict:
    """The teacher's own row: its size and held-out metrics (out/teacher.json)."""
    path = plan.out / "teacher.json"
    record = read_json(path)
    if record.get("path") != str(plan.teacher):  # another teacher: nothing measured of it yet
        record = {}
    if record.get("held_out_paths") != list(plan.held_out):
        net = load_net(plan.teacher)
        log("teacher: scoring on the held-out games")
        record.update({"path": str(plan.teacher), "size": f"{net.config.filters}x{net.config.blocks}",
                       "parameters": parameters(net), "held_out_paths": list(plan.held_out),
                       "held_out": held_out_metrics(net, plan.held_out, plan.held_out_positions)})
        write_json(path, record)
    return record
