"""Migration on equal terms (issue 30): one teacher distilled into an SE-ResNet student and into an attention-body
(BT) student of about the same parameter count, the same positions in the same order for the same steps and
seeds, scored on held-out games that nothing was tuned on, and the two students matched in lc0.

    python tools/migration_experiment.py                        # maia-1900 into a 64x6 SE and a bt-64x4 student
    python tools/migration_experiment.py --quick                # a smoke run of a few minutes

The data, the split and the distillation are tools/distill_experiment.py's (its reference settings: the lc0
games split by a hash of their names into training, validation and held-out games, --played-games games the
teacher played itself, the teacher's cached outputs at T=2 in Hinton's form with weight 1 on policy and value,
4,500 steps of 256, the best checkpoint on the validation games). Each student trains as its family trains by
default: the SE student with SGD at --lr (the distillation experiment's), the BT student with AdamW at 1e-3,
decoupled decay 0.01 and 250 warmup steps (configs/migrate-se-to-bt.yaml); neither was tuned here. Both arms
read the same files in the same order (the digest of every position read is compared: `equal_positions`).

Figures per student: parameters, FLOPs per position, held-out policy loss, top-1, value MSE and CE (and the
teacher's), training positions/s (with --jobs 2 the two students of a seed train side by side, cores/2 threads
each: comparable when both ran together, as the log's "2 runs to do" says),
nps in lc0 (the same binary, backend and threads for both), and the match of the first student against the
second in lc0 at each --match-nodes, pentanomial Elo with its 95% interval. The folder layout is
distill_experiment's: a killed experiment continues where it stopped (runs resume from their checkpoints;
finished runs, nps figures and matches are kept). OUT/result.md and OUT/result.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import distill_experiment as experiment  # noqa: E402  (a sibling script: the data, runs and scoring)
import numpy as np  # noqa: E402

from lc0distill.config import load_config  # noqa: E402
from lc0distill.errors import Lc0DistillError  # noqa: E402
from lc0distill.fileio import file_sha256, read_records, write_json  # noqa: E402
from lc0distill.models.net import flops_per_position, count_parameters  # noqa: E402
from lc0distill.models.store import load_model  # noqa: E402
from lc0distill.nets import load_net  # noqa: E402

DEFAULT_OUT = experiment.PROJECT_ROOT / "runs" / "migration-experiment"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="migration_experiment.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add = parser.add_argument
    experiment.add_common_arguments(add)
    add("--students", default="bt-64x4,64x6", help="the two students, comma-separated: bt-WIDTHxLAYERS (an "
        "attention-body preset) or FILTERSxBLOCKS (an SE-ResNet); the match plays the first against the second")
    add("--lr", type=float, default=0.05, help="the SE student's peak SGD rate (5%% warmup, cosine to 1%%)")
    add("--seeds", type=int, default=1, help="seeds per student (data order and initial weights)")
    add("--played-games", type=int, default=None, help="teacher-played games in the training data "
        "(default 3000; --quick 20)")
    add("--temperature", type=float, default=2.0, help="temperature of the teacher's policy (Hinton's form)")
    add("--match-games", type=int, default=200, help="lc0 games at each --match-nodes, split over the seeds")
    add("--match-nodes", default="1,100", help="lc0 nodes per move, comma-separated")
    add("--nps-positions", type=int, default=8, help="built-in openings each student searches for its nps")
    add("--nps-seconds", type=float, default=2.0, help="seconds of search on each")
    add("--out", type=Path, default=DEFAULT_OUT, help="experiment folder (distill_experiment's layout)")
    add("--json", action="store_true", help="print the result as one JSON object (the log goes to stderr)")
    add("--quick", action="store_true", help="smoke run: 40 training games, 20 played, 8 validation and 8 "
        "held-out games, 20 steps, at most 2 seeds and 8 match games, 1 nps position of 0.2 s")
    args = parser.parse_args(argv)
    args.students = [s.strip() for s in args.students.split(",") if s.strip()]
    args.steps = args.steps or (20 if args.quick else 4500)
    args.played_games = (20 if args.quick else 3000) if args.played_games is None else args.played_games
    if args.quick:
        args.match_games, args.seeds = min(args.match_games, 8), min(args.seeds, 2)
        args.nps_positions, args.nps_seconds = 1, 0.2
    args.eval_every = args.eval_every or max(1, args.steps // 15)
    args.match_nodes = [int(n) for n in args.match_nodes.split(",") if n.strip()]
    # what distill_experiment's helpers read: the distillation at its reference settings
    args.student, args.teacher_weight, args.value_distill, args.kl_form = args.students[0], 1.0, 1.0, "hinton"
    args.teacher_schedule, args.teacher_schedule_at = "constant", 0.5
    args.played_temperature, args.played_random_plies = 1.0, 4
    problems = [message for bad, message in (
        (len(args.students) != 2 or args.students[0] == args.students[1], "--students names two different nets"),
        (args.steps < 1 or args.batch_size < 1 or args.seeds < 1, "--steps, --batch-size and --seeds must be >= 1"),
        (not (0 < args.test_ratio and 0 < args.val_ratio and args.test_ratio + args.val_ratio < 1),
         "--test-ratio and --val-ratio must be > 0 and sum below 1"),
        (args.temperature <= 0, "--temperature must be > 0"),
        (any(n < 1 for n in args.match_nodes), "--match-nodes are positive node counts"),
    ) if bad]
    if problems:
        parser.error(problems[0])
    for student in args.students:  # a bad name stops here, not after the teacher's games and cache
        try:
            load_config(None, ['data.paths=["-"]', *experiment.student_settings(args, student)])
        except Lc0DistillError as error:
            parser.error(f"--students {student}: {error}")
    return args


def run_experiment(args) -> dict:
    teacher_net = load_net(args.teacher).eval()
    split = experiment.split_games([str(p) for p in args.data], args.test_ratio, args.val_ratio)
    if args.quick:
        split = experiment.Split(split.train[:40], split.validation[:8], split.held_out[:8])
    lists = {name: experiment.write_list(args.out / f"{name}_games.txt", getattr(split, name))
             for name in ("train", "validation", "held_out")}
    experiment.say(f"data: {len(split.train)} training, {len(split.validation)} validation and "
                   f"{len(split.held_out)} held-out games; teacher {args.teacher}")
    played = experiment.played_games(args, temperature=1.0, random_plies=4)  # the equal-terms experiment's games
    data = [lists["train"], *played]
    cache = experiment.teacher_cache(args, args.out, [*data, lists["validation"]])
    jobs = [experiment.Job(f"distilled-{student}", seed,
                           experiment.arm_config(args, f"distilled-{student}", seed, data, lists["validation"], cache,
                                                 args.out / "runs", student))
            for seed in range(args.seeds) for student in args.students]
    experiment.train_all(jobs, args.jobs)

    games = experiment.scored_games(split.held_out, 1024 if args.quick else None)
    experiment.say(f"scoring on held-out games: {sum(len(b) for g in games for b in g):,} positions")
    teacher = experiment.CachedTeacher(teacher_net)
    sizes, teacher_metrics = experiment.per_game(teacher, games)
    students = {student: student_figures(args, [job for job in jobs if job.arm == f"distilled-{student}"], games,
                                         sizes, teacher)
                for student in args.students}
    digests = {tuple(run["data_digest"] for run in students[s]["runs"]) for s in args.students}
    final_steps = {run["final_step"] for figures in students.values() for run in figures["runs"]}
    result = {"equal_positions": len(digests) == 1 and None not in next(iter(digests)),
              "equal_steps": final_steps == {args.steps}, "steps": args.steps, "batch_size": args.batch_size,
              "seeds": args.seeds, "students": students, "order": args.students, "scored_games": len(games),
              "scored_positions": int(sizes.sum()), "positions": experiment.positions_in(data),
              "teacher": {"path": str(args.teacher), "sha256": file_sha256(args.teacher),
                          "parameters": count_parameters(teacher_net), "flops": flops_per_position(teacher_net),
                          **{name: experiment.pooled(sizes, teacher_metrics[name])
                             for name, _, _ in experiment.METRICS}}}
    if args.match_games and args.match_nodes:
        pairs = [(Path(first["run"]) / "best.pt", Path(second["run"]) / "best.pt") for first, second in
                 zip(students[args.students[0]]["runs"], students[args.students[1]]["runs"])]
        result["match"] = {f"nodes_{nodes}": played_match(args, pairs, nodes) for nodes in args.match_nodes}
    return result


def student_figures(args, runs: list, games: list, sizes, teacher) -> dict:
    """One student's held-out metrics (mean and SE over its seeds' best checkpoints), size, speeds and runs."""
    from lc0distill.ladder.rung import train_rate

    nets = [load_model(job.run_dir / "best.pt") for job in runs]
    per_seed = [experiment.per_game(net, games, teacher)[1] for net in nets]
    figures = {}
    for name, _, _ in experiment.METRICS:  # a metric a head lacks (value CE of a scalar value) is left out
        values = [experiment.pooled(sizes, s[name]) for s in per_seed if name in s]
        if values:
            figures[name], figures[f"{name}_se"] = float(np.mean(values)), experiment.seed_se(values)
    return {"parameters": count_parameters(nets[0]), "flops": flops_per_position(nets[0]),
            "train_positions_per_second": [train_rate(job.run_dir) for job in runs],
            "lc0": lc0_speed(args, runs[0].run_dir), **figures,
            "runs": [{"seed": job.seed, "run": str(job.run_dir), "final_step": final_step(job.run_dir),
                      **experiment.best_of(job)} for job in runs]}


def final_step(run_dir: Path) -> int | None:
    """The last step the run logged (every run logs its last step)."""
    steps = [record["step"] for record in read_records(run_dir / "metrics.jsonl", "train")]
    return max(steps) if steps else None


def lc0_speed(args, run_dir: Path) -> dict:
    """The best checkpoint's nps in lc0 (the match's binary, backend and threads), kept in RUN/nps.json."""
    from lc0distill.engine.locate import EngineNotFound
    from lc0distill.ladder.speed import lc0_nps
    from lc0distill.match.players import DEFAULT_ENGINE_OPTIONS

    kept = run_dir / "nps.json"
    if kept.exists():
        return json.loads(kept.read_text())
    experiment.say(f"{run_dir.name}: nps in lc0 ({args.nps_positions} positions x {args.nps_seconds:g}s)")
    try:
        speed = lc0_nps(run_dir / "best.pt", DEFAULT_ENGINE_OPTIONS, args.nps_positions, args.nps_seconds)
    except EngineNotFound as error:  # not kept: measured once the engine is there
        return {"nps": None, "skipped": str(error)}
    write_json(kept, speed, allow_nan=True)
    return speed


def played_match(args, pairs: list[tuple[Path, Path]], nodes: int) -> dict:
    """distill_experiment's match of the first student against the second, kept in OUT/match-nodes-N.json: a
    rerun (after a kill, or to rewrite the table) does not play the same games again."""
    kept = args.out / f"match-nodes-{nodes}.json"
    key = {"pairs": [[str(a), str(b)] for a, b in pairs], "games": args.match_games,
           "sha256": [[file_sha256(a), file_sha256(b)] for a, b in pairs]}  # a net trained again is matched again
    if kept.exists():
        record = json.loads(kept.read_text())
        if record.get("key") == key:
            return record["match"]
    match = experiment.engine_match(args, pairs, nodes)
    if "elo" in match:  # a skipped or failed match is tried again next time
        write_json(kept, {"key": key, "match": match}, allow_nan=True)  # Elo may be inf
    return match


def table(result: dict) -> str:
    metrics = experiment.METRICS
    lines = [f"| held-out ({result['scored_positions']:,} positions, {result['scored_games']} games) | parameters | "
             f"MFLOP | {' | '.join(label for _, label, _ in metrics)} | train pos/s | lc0 nps |",
             "|---" * (len(metrics) + 5) + "|"]
    teacher = result["teacher"]
    lines.append(f"| teacher | {teacher['parameters']:,} | {teacher['flops'] / 1e6:.1f} | "
                 f"{' | '.join(f'{teacher[n]:.4f}' for n, _, _ in metrics)} | - | - |")
    for name in result["order"]:
        student = result["students"][name]
        rates = [r for r in student["train_positions_per_second"] if r]
        cells = [f"{student[n]:.4f}" + (f" ± {student[n + '_se']:.4f}" if student.get(n + "_se") else "")
                 if n in student else "-" for n, _, _ in metrics]
        nps = student["lc0"].get("nps")
        lines.append(f"| {name} ({result['positions']:,} positions, {result['steps']:,} steps) | "
                     f"{student['parameters']:,} | {student['flops'] / 1e6:.1f} | {' | '.join(cells)} | "
                     f"{sum(rates) / len(rates) if rates else float('nan'):,.0f} | {nps if nps else '-'} |")
    return "\n".join(lines) + experiment.match_lines(result.get("match", {}), " vs ".join(result["order"]))


def main(argv: list[str] | None = None) -> int:
    return experiment.run_and_report(parse_args(argv), run_experiment, table, "migration_experiment.py")


if __name__ == "__main__":
    sys.exit(main())
