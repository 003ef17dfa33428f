"""What a PBT run leaves: each member's history (from the "pbt" records in its metrics.jsonl), a table of
every member's hyperparameters (lambda_k, lr, T) and metric over steps, a PNG of them, and the best member's
final net exported beside them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from lc0distill.errors import Lc0DistillError
from lc0distill.fileio import read_records, write_atomic
from lc0distill.pbt.config import PbtRunConfig
from lc0distill.pbt.hyper import member_name

TABLE, SUMMARY, FIGURE = "pbt.md", "pbt.json", "pbt.png"


def member_events(member_dir: Path) -> list[dict]:
    """The member's "pbt" records in order: starts (fresh, resume, exploit) and reports."""
    path = member_dir / "metrics.jsonl"
    if not path.is_file():
        raise Lc0DistillError(f"{member_dir}: no metrics.jsonl (the member never started)")
    return read_records(path, "pbt")


def kept_history(events: list[dict]) -> list[dict]:
    """The member's events along the path Tune kept, without the branches a kill or a restart abandoned (work
    the member then trained again):
    - a resume loads the checkpoint of one of the member's reports (the same fingerprint): the events after
      that report were lost;
    - an exploit that repeats an earlier one (the same source checkpoint and explored hyperparameters: Tune
      restoring the clone it had decided on) replaces that exploit and what followed it.
    An exploit that is new keeps the member's earlier reports: Tune ranked them, even when the clone's step is
    behind them (asynchronous PBT cloning a lagging donor)."""
    kept: list[dict] = []
    for event in events:
        if event["event"] == "resume":
            kept = kept[:_resumed_from(kept, event)]
        elif event["event"] == "exploit":
            earlier = [i for i, e in enumerate(kept) if e["event"] == "exploit" and _same_exploit(e, event)]
            if earlier:
                kept = kept[:earlier[-1]]
        kept.append(event)
    return kept


def _resumed_from(kept: list[dict], resume: dict) -> int:
    """How many of the kept events stay before a resume: those up to the report whose checkpoint it loaded,
    or, with no report of that fingerprint, all but the reports beyond its step."""
    loaded = resume.get("fingerprint")
    if loaded is not None:
        for index in range(len(kept) - 1, -1, -1):
            if kept[index]["event"] == "report" and kept[index].get("fingerprint") == loaded:
                return index + 1
    beyond = [i for i, e in enumerate(kept) if e["event"] == "report" and e["step"] > resume["step"]]
    return beyond[0] if beyond else len(kept)


def _same_exploit(earlier: dict, event: dict) -> bool:
    keys = ("source", "source_step", "source_fingerprint", "step", "hyperparameters")
    return all(earlier.get(key) == event.get(key) for key in keys)


def finished(run_dir: Path, config: PbtRunConfig) -> bool:
    """Whether every member's kept history ends in a report at the last step (the run has nothing to train)."""
    for index in range(config.pbt.population):
        member_dir = run_dir / "members" / member_name(index)
        if not (member_dir / "metrics.jsonl").is_file():
            return False
        reports = [e for e in kept_history(member_events(member_dir)) if e["event"] == "report"]
        if not reports or reports[-1]["step"] < config.train.steps:
            return False
    return True


def _rows(name: str, events: list[dict], metric: str) -> list[dict]:
    """One row per report: the step, the metric, the hyperparameters and teacher weights it trained with,
    and how the segment started (an exploit names its source)."""
    rows, started = [], "fresh"
    for event in events:
        if event["event"] == "exploit":
            started = f"exploited {event['source']} (its step {event['source_step']})"
        elif event["event"] == "resume":
            started = started if rows else "resumed"
        elif event["event"] == "report":
            rows.append({"member": name, "step": event["step"], metric: event.get(metric),
                         "hyperparameters": event["hyperparameters"], "lambdas": event.get("lambdas", {}),
                         "started": started})
            started = ""
    return rows


def summarise(run_dir: Path, config: PbtRunConfig) -> dict:
    """pbt.json, pbt.md, pbt.png and best.pb.gz / best.pt; the summary."""
    metric, steps = config.pbt.metric, config.train.steps
    members, rows, exploits = [], [], []
    for index in range(config.pbt.population):
        name = member_name(index)
        events = kept_history(member_events(run_dir / "members" / name))
        reports = [e for e in events if e["event"] == "report"]
        last = reports[-1] if reports else {}
        members.append({"member": name, "step": last.get("step", 0), metric: last.get(metric),
                        "hyperparameters": last.get("hyperparameters"), "lambdas": last.get("lambdas", {}),
                        "exploits": sum(e["event"] == "exploit" for e in events)})
        rows += _rows(name, events, metric)
        exploits += [{"member": name, "step": e["step"], "source": e["source"], "source_step": e["source_step"],
                      "weights_identical": e["fingerprint"] == e["source_fingerprint"],
                      "source_hyperparameters": e["source_hyperparameters"], "hyperparameters": e["hyperparameters"]}
                     for e in events if e["event"] == "exploit"]
    finished = [m for m in members if m["step"] >= steps and m[metric] is not None]
    if not finished:
        raise Lc0DistillError(f"{run_dir}: no member reached step {steps}")
    better = min if config.pbt.mode == "min" else max
    best = better(finished, key=lambda m: m[metric])
    best_dir = run_dir / "members" / best["member"]
    exported = {}
    for source, target in (("final.pb.gz", "best.pb.gz"), ("final.pt", "best.pt")):
        if (best_dir / source).exists():
            shutil.copyfile(best_dir / source, run_dir / target)
            exported[target.split(".", 1)[1]] = str(run_dir / target)
    summary = {"run_dir": str(run_dir), "population": config.pbt.population, "steps": steps, "metric": metric,
               "best": {**best, "nets": exported}, "members": members, "exploits": exploits,
               "table": str(run_dir / TABLE), "png": str(run_dir / FIGURE), "ray_results": str(run_dir / "ray" / "pbt")}
    write_atomic(run_dir / TABLE, table(rows, metric).encode())
    _figure(run_dir, config)
    write_atomic(run_dir / SUMMARY, (json.dumps(summary, indent=1) + "\n").encode())
    return summary


def table(rows: list[dict], metric: str) -> str:
    """A Markdown table: member, step, lr, each lambda_k, T, the metric, how the segment started."""
    teachers = sorted({name for row in rows for name in row["lambdas"]})
    header = ["member", "step", "lr", *[f"lambda {t}" for t in teachers], "T", metric, "segment"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in sorted(rows, key=lambda r: (r["step"], r["member"])):
        hyper = row["hyperparameters"]
        cells = [row["member"], str(row["step"]), _number(hyper.get("lr")),
                 *[_number(row["lambdas"].get(t)) for t in teachers], _number(hyper.get("temperature")),
                 _number(row[metric]), row["started"]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _number(value) -> str:
    return "" if value is None else f"{value:.4g}"


def _figure(run_dir: Path, config: PbtRunConfig) -> None:
    from lc0distill.report.plot import plot_runs

    folders = [run_dir / "members" / member_name(i) for i in range(config.pbt.population)]
    plot_runs(folders, run_dir / FIGURE, title=f"PBT: {config.pbt.population} members, lambda_k, lr and "
                                                 f"held-out {config.pbt.metric} over steps",
              keys=("teacher_weight", "lr", "temperature", config.pbt.metric))
    plot_runs(folders, run_dir / "curves.png", title="PBT members: every curve")
