"""Distillation on equal terms: students trained on the same positions for the same steps, with and without a
teacher, scored on held-out games no run has seen or been tuned on.

    python tools/distill_experiment.py --seeds 3                 # the reference experiment (see docs/distillation.md)
    python tools/distill_experiment.py --seeds 1 --evaluate-on validation --temperature 2   # a tuning row
    python tools/distill_experiment.py --quick                   # a smoke run of a few minutes

Data: the lc0 games (--data, one game per chunk file) are split by a hash of each file's name into held-out
games (--test-ratio), validation games (--val-ratio) and training games. The teacher also plays --played-games
games against itself (`data play --targets played`: its moves sampled from its raw policy, each record
labelled with the played move one-hot and the result z, as a game record gives them). Arms:
- hard: the training games (their search policy and z) plus the played games (played move one-hot and z):
  the labels a user training on games has;
- distilled: the same files in the same order (the same seed stream: a digest of every position read proves
  it), the teacher's policy (KL at --temperature in --kl-form) and WDL mixed with those labels at
  --teacher-weight;
- search (with --search-games N): the training games plus N games of the teacher's lc0 self-play at
  --search-visits (real search policy and z, `data play --engine lc0`) instead of the played games: more real
  data instead of a teacher. Its positions are not the others'.
Every arm trains --steps steps; its validation policy loss every --eval-every steps picks its best checkpoint
(train.keep_best), which is what is scored. --seeds K repeats every arm with seeds 0..K-1 (data order and
initial weights); a seed's hard and distilled runs share the seed. Figures: each arm's held-out metrics (mean
over seeds, the standard error across seeds, and a bootstrap over held-out games), the gap closed
(hard - distilled) / (hard - teacher) per seed, and the lc0 match of distilled against hard at each
--match-nodes (the games split over the seeds' pairs, pooled into one pentanomial Elo with its 95% interval).

Runs live in OUT/runs/<arm>-<hash of their config>: an interrupted experiment continues where it stopped, and
rows that change one arm's settings reuse the other arm's runs. --json prints one object (the shape is in
docs/distillation.md); the table and the object are also written to OUT/result.md and OUT/result.json.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lc0distill.chunks.config import DataConfig, make_loader, select_sources
from lc0distill.chunks.sources import find_chunks
from lc0distill.config import RunConfig, dump_config, load_config
from lc0distill.fileio import file_sha256, read_json, write_atomic, write_json
from lc0distill.errors import Lc0DistillError
from lc0distill.evaluate import evaluate_net
from lc0distill.models.store import load_model
from lc0distill.nets import load_net

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TEACHER = PROJECT_ROOT.parent / "shared" / "nets" / "maia-1900.pb.gz"
DEFAULT_DATA = PROJECT_ROOT.parent / "shared" / "lc0-selfplay-maia1900"
DEFAULT_OUT = PROJECT_ROOT / "runs" / "distill-experiment"
METRICS = (("policy_loss", "policy loss", True), ("top1_accuracy", "top-1", False), ("value_mse", "value MSE", True),
           ("value_ce", "value CE", True))
BOOTSTRAP_DRAWS = 2000


def add_common_arguments(add) -> None:
    """The teacher, the data and its split, the steps and the training jobs (tools/migration_experiment.py too)."""
    add("--teacher", type=Path, default=DEFAULT_TEACHER, help="lc0 .pb.gz net or lc0distill .pt")
    add("--data", nargs="+", default=[str(DEFAULT_DATA)], help="lc0 games: chunk files, folders, globs, @lists")
    add("--steps", type=int, default=None, help="optimizer steps of every run (default 4500; --quick 20)")
    add("--batch-size", type=int, default=256)
    add("--test-ratio", type=float, default=0.1, help="share of the lc0 games held out for the report")
    add("--val-ratio", type=float, default=0.1, help="share of the lc0 games that pick each run's best checkpoint")
    add("--eval-every", type=int, default=None, help="steps between validation evaluations (default: steps/15)")
    add("--jobs", type=int, default=2, help="runs trained at once (each with cores/jobs threads)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="distill_experiment.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add = parser.add_argument
    add_common_arguments(add)
    add("--student", default="64x6", help="student size: FILTERSxBLOCKS, an SE-ResNet (the rows: 32x4 and 48x5 "
        "close less), or bt-WIDTHxLAYERS, an attention-body preset (AdamW at 1e-3, see student_settings)")
    add("--lr", type=float, default=0.05, help="peak SGD rate (warmup 5%%, then cosine to 1%%)")
    add("--seeds", type=int, default=3, help="seeds per arm (data order and initial weights)")
    add("--evaluate-on", choices=("held-out", "validation"), default="held-out",
        help="the games scored: validation for tuning rows (never tune on held-out games)")
    add("--played-games", type=int, default=None, help="teacher-played games in every arm's training data "
        "(default 3000; --quick 20; 0: none)")
    add("--played-temperature", type=float, default=1.0, help="sampling temperature of those games")
    add("--played-random-plies", type=int, default=4, help="random plies opening those games")
    add("--search-games", type=int, default=0, help="the search arm: games of the teacher's lc0 self-play "
        "(0: no search arm)")
    add("--search-visits", type=int, default=16, help="visits per move of those games")
    add("--teacher-weight", type=float, default=1.0, help="the teacher's share of the policy target")
    add("--value-distill", type=float, default=1.0, help="the teacher's share of the value target, as a "
        "fraction of --teacher-weight")
    add("--temperature", type=float, default=2.0, help="temperature of the teacher's policy (the rows: 1 and 0.5 "
        "close less)")
    add("--kl-form", choices=("hinton", "lczero"), default="hinton", help="hinton: both at T, x T^2; lczero: "
        "the teacher at T only (T < 1: Rusu et al.'s sharp teacher)")
    add("--teacher-schedule", choices=("constant", "linear_decay", "switch_off"), default="constant",
        help="the teacher weight over the steps: kept, decayed linearly to 0 from --teacher-schedule-at, or "
             "switched off there")
    add("--teacher-schedule-at", type=float, default=0.5, metavar="FRACTION", help="share of the steps where "
        "the decay starts or the teacher switches off")
    add("--match-games", type=int, default=200, help="lc0 games of distilled against hard at each --match-nodes, "
        "split over the seeds (0: no match)")
    add("--match-nodes", default="1,100", help="lc0 nodes per move, comma-separated")
    add("--out", type=Path, default=DEFAULT_OUT, help="experiment folder")
    add("--json", action="store_true", help="print the result as one JSON object (the log goes to stderr)")
    add("--quick", action="store_true", help="smoke run: 40 training games, 20 played, 8 validation and 8 "
        "held-out games, 20 steps, at most 2 seeds and 8 match games")
    args = parser.parse_args(argv)
    args.steps = args.steps or (20 if args.quick else 4500)
    args.played_games = (20 if args.quick else 3000) if args.played_games is None else args.played_games
    if args.quick:
        args.match_games = min(args.match_games, 8)
        args.seeds = min(args.seeds, 2)
    args.eval_every = args.eval_every or max(1, args.steps // 15)
    args.match_nodes = [int(n) for n in args.match_nodes.split(",") if n.strip()]
    problems = [message for bad, message in (
        (args.steps < 1 or args.batch_size < 1 or args.seeds < 1, "--steps, --batch-size and --seeds must be >= 1"),
        (not (0 < args.test_ratio and 0 < args.val_ratio and args.test_ratio + args.val_ratio < 1),
         "--test-ratio and --val-ratio must be > 0 and sum below 1"),
        (not 0.0 <= args.teacher_weight <= 1.0, "--teacher-weight must be in [0, 1]"),
        (not 0.0 <= args.value_distill <= 1.0, "--value-distill must be in [0, 1]"),
        (args.temperature <= 0, "--temperature must be > 0"),
        (not 0.0 <= args.teacher_schedule_at < 1.0, "--teacher-schedule-at must be in [0, 1)"),
        (any(n < 1 for n in args.match_nodes), "--match-nodes are positive node counts"),
    ) if bad]
    if problems:
        parser.error(problems[0])
    return args


def say(*parts) -> None:
    print(*parts, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------- data

@dataclass(frozen=True)
class Split:
    train: list[str]
    validation: list[str]
    held_out: list[str]


def split_games(data: list[str], test_ratio: float, val_ratio: float) -> Split:
    """Files in the order of a hash of their names: the first test_ratio of them held out, the next val_ratio
    for validation, the rest for training. The same files whatever the folder or the other settings."""
    files = sorted({str(Path(source.path).resolve()) for source in find_chunks(data)})
    if len(files) < 3:
        raise Lc0DistillError(f"need at least 3 chunk files to split, found {len(files)} in {' '.join(data)}")
    ordered = sorted(files, key=lambda f: (hashlib.blake2b(Path(f).name.encode(), digest_size=8).digest(), f))
    held = max(1, round(test_ratio * len(files)))
    val = max(1, round(val_ratio * len(files)))
    return Split(sorted(ordered[held + val:]), sorted(ordered[held:held + val]), sorted(ordered[:held]))


def write_list(path: Path, files: list[str]) -> str:
    path.write_text("".join(f"{name}\n" for name in files))
    return f"@{path}"


def cli(argv: list[str], what: str) -> None:
    from lc0distill.cli import main as lc0distill

    with contextlib.redirect_stdout(sys.stderr):
        if lc0distill(argv) != 0:
            raise Lc0DistillError(f"{what} failed: lc0distill {' '.join(argv)}")


MADE_BY = "made_by.json"


def teacher_games(args, name: str, games: int, flags: list[str]) -> list[str]:
    """[OUT/name] holding `games` games of the teacher against itself (data play with `flags`), made once.

    The folder's name says how the games were played, not by whom: OUT/name/made_by.json records the teacher's
    sha256 and the flags, and a finished folder made otherwise is an error, never reused as this teacher's games
    (nor deleted: it is another experiment's data)."""
    if not games:
        return []
    folder = args.out / name
    made_by = {"teacher_sha256": file_sha256(args.teacher), "games": games, "flags": flags}
    if len(list(folder.glob("game_*.gz"))) == games:
        check_made_by(folder, made_by)
        return [str(folder)]
    shutil.rmtree(folder, ignore_errors=True)  # a generation cut short: made again from the start
    started = time.perf_counter()
    cli(["data", "play", "--net", str(args.teacher), "--games", str(games), "--out", str(folder), *flags],
        "data play")
    write_json(folder / MADE_BY, made_by)
    say(f"{name}: {games} games in {time.perf_counter() - started:,.0f}s")
    return [str(folder)]


def played_games(args, temperature: float, random_plies: int) -> list[str]:
    """--played-games games of the teacher sampling its own policy at `temperature` after `random_plies`
    random plies, with the played moves as policy targets (the teacher cache gives the soft ones)."""
    return teacher_games(args, f"played-{args.played_games}-t{temperature:g}-r{random_plies}", args.played_games,
                         ["--targets", "played", "--temperature", f"{temperature:g}", "--random-plies",
                          str(random_plies), "--seed", "1000"])


def check_made_by(folder: Path, made_by: dict) -> None:
    kept = read_json(folder / MADE_BY)
    if not kept:
        raise Lc0DistillError(f"{folder}: finished games with no {MADE_BY} saying which teacher played them; "
                              f"use another --out, or write {json.dumps(made_by)} there if it was this teacher")
    if kept != made_by:
        raise Lc0DistillError(f"{folder}: games made by teacher {kept.get('teacher_sha256', '?')[:12]} with "
                              f"{kept.get('flags')}, not by {made_by['teacher_sha256'][:12]} with {made_by['flags']}: "
                              f"use another --out")


def teacher_cache(args, out: Path, data: list[str]) -> Path:
    """The teacher's outputs on every training and validation position, computed once for all arms and seeds."""
    listed = [Path(d[1:]).read_text() if d.startswith("@") else d for d in data]
    key = hashlib.sha256("\n".join([file_sha256(args.teacher), *listed]).encode()).hexdigest()[:12]
    folder = out / f"teacher-cache-{key}"
    if not (folder / "manifest.json").exists():
        cli(["teacher", "cache", *data, "--teacher", str(args.teacher), "--out", str(folder)], "teacher cache")
    return folder


def positions_in(data: list[str]) -> int:
    config = DataConfig(paths=data, workers=0, sample_rate=1, shuffle_buffer=0, test_ratio=0.0)
    train, _ = select_sources(config)
    return sum(len(b) for b in make_loader(config, train, passes=1, sample_rate=1))


# ----------------------------------------------------------------------------------------------- runs

@dataclass(frozen=True)
class Job:
    arm: str
    seed: int
    config: RunConfig

    @property
    def run_dir(self) -> Path:
        return Path(self.config.train.run_dir)


def student_settings(args, student: str) -> list[str]:
    """The student's net and optimizer: an SE-ResNet FILTERSxBLOCKS with SGD at --lr (5% warmup, cosine to 1%);
    an attention body bt-WIDTHxLAYERS (a preset) with what attention bodies train with by default (AdamW,
    decoupled decay 0.01, lr 1e-3 after 250 warmup steps, cosine to 1e-5: configs/migrate-se-to-bt.yaml)."""
    common = ["train.lr.kind=cosine", f"train.lr.total_steps={args.steps}", "net.moves_left=false"]
    if student.startswith("bt-"):
        return [*common, "net.body=attention", f"net.size={student[3:]}", "train.optimizer=adamw",
                "train.weight_decay=0.01", "train.lr.lr=0.001", f"train.lr.warmup_steps={min(250, args.steps // 4)}",
                "train.lr.min_lr=0.00001"]
    return [*common, f"net.size={student}", "train.optimizer=sgd", f"train.lr.lr={args.lr}",
            f"train.lr.warmup_steps={max(1, args.steps // 20)}", f"train.lr.min_lr={args.lr / 100}"]


def arm_config(args, arm: str, seed: int, data: list[str], validation: str, cache: Path | None,
               runs: Path, student: str | None = None) -> RunConfig:
    overrides = [
        f"data.paths={json.dumps(data)}", f"data.test_paths={json.dumps([validation])}", "data.sample_rate=1",
        f"data.batch_size={args.batch_size}", "data.shuffle_buffer=32768", "data.workers=0", f"data.seed={seed}",
        "data.chunk_order=name", *student_settings(args, student or args.student), f"train.steps={args.steps}",
        f"train.seed={seed}", "train.device=cpu", f"train.threads={max(1, (os.cpu_count() or 1) // args.jobs)}",
        f"train.log_every={max(1, args.steps // 10)}", f"train.eval_every={args.eval_every}",
        f"train.eval_positions={10**9}", f"train.checkpoint_every={args.eval_every}", "train.keep_best=true",
        "export.lc0=false",
    ]
    if arm.startswith("distilled"):
        overrides += [f"teacher.nets={json.dumps([str(args.teacher)])}", f"teacher.cache={json.dumps(str(cache))}",
                      f"loss.teacher_weight.weight={args.teacher_weight}", f"loss.value_distill={args.value_distill}",
                      f"loss.temperature.start={args.temperature}", f"loss.kl_form={args.kl_form}",
                      *teacher_schedule(args)]
    config = load_config(None, [*overrides, "train.run_dir=pending"])
    tag = hashlib.sha256(dump_config(config).encode()).hexdigest()[:10]
    return load_config(None, [*overrides, f"train.run_dir={json.dumps(str(runs / f'{arm}-s{seed}-{tag}'))}"])


def teacher_schedule(args) -> list[str]:
    at = int(args.steps * args.teacher_schedule_at)
    if args.teacher_schedule == "linear_decay":
        return ["loss.teacher_weight.kind=linear_decay", f"loss.teacher_weight.start_step={at}",
                f"loss.teacher_weight.end_step={args.steps}"]
    if args.teacher_schedule == "switch_off":
        return ["loss.teacher_weight.kind=switch_off", f"loss.teacher_weight.off_step={at}"]
    return []


def train_job(job: Job) -> tuple[str, float]:
    """One run in its own process, its log in RUN_DIR/train.log; finished runs return at once."""
    from lc0distill.train import train

    job.run_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with open(job.run_dir / "train.log", "a") as log, contextlib.redirect_stdout(log), \
            contextlib.redirect_stderr(log):
        train(job.config, log=lambda line: print(line, flush=True))
    return str(job.run_dir), time.perf_counter() - started


def train_all(jobs: list[Job], parallel: int) -> None:
    for job in jobs:  # a folder holding another config's run is not resumed: it is made again
        saved = job.run_dir / "config.yaml"
        if saved.exists() and load_config(saved) != job.config:
            shutil.rmtree(job.run_dir)
    todo = [job for job in jobs if not (job.run_dir / "best.json").exists() or not (job.run_dir / "final.pt").exists()]
    say(f"training: {len(todo)} runs to do, {len(jobs) - len(todo)} done ({parallel} at a time)")
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=parallel, mp_context=context) as pool:
        for run_dir, seconds in pool.map(train_job, todo):
            say(f"  {Path(run_dir).name}: {seconds:,.0f}s")


def best_of(job: Job) -> dict:
    kept = json.loads((job.run_dir / "best.json").read_text())
    data = [json.loads(line) for line in (job.run_dir / "metrics.jsonl").read_text().splitlines()
            if '"kind": "data"' in line]
    return {"best_step": kept["step"], "validation_policy_loss": kept["metrics"]["policy_loss"],
            "data_digest": data[-1]["digest"] if data else None}


# ----------------------------------------------------------------------------------------------- scoring

class CachedTeacher:
    """The teacher's outputs on the scored batches, computed once (they are the same tensors for every net)."""

    def __init__(self, net):
        self.net, self.cache = net, {}

    def __call__(self, planes: torch.Tensor):
        if id(planes) not in self.cache:
            self.cache[id(planes)] = self.net(planes)
        return self.cache[id(planes)]


def scored_games(files: list[str], limit: int | None) -> list[list]:
    """The scored positions as batches, one list per game (file), every record read once."""
    games, positions = [], 0
    config = DataConfig(paths=files, workers=0, shuffle_buffer=0, batch_size=512)
    for source in find_chunks(files):
        batches = list(make_loader(config, [source], passes=1, sample_rate=1))
        if batches:
            games.append(batches)
            positions += sum(len(b) for b in batches)
        if limit is not None and positions >= limit:
            break
    return games


def per_game(net, games: list[list], teacher=None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(positions per game, metric -> per-game means)."""
    sizes, values = [], {}
    for batches in games:
        metrics = evaluate_net(net, batches, None, teacher)
        sizes.append(metrics["positions"])
        for name, value in metrics.items():
            if name != "positions" and value is not None:
                values.setdefault(name, []).append(value)
    return np.array(sizes, dtype=float), {name: np.array(v) for name, v in values.items()}


def pooled(sizes: np.ndarray, per_game_values: np.ndarray) -> float:
    return float((sizes * per_game_values).sum() / sizes.sum())


def seed_se(values: list[float]) -> float | None:
    return float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else None


def gap(hard: float, distilled: float, teacher: float, lower_better: bool) -> float | None:
    """(hard - distilled) / (hard - teacher) for a loss; (distilled - hard) / (teacher - hard) for an accuracy."""
    span = (hard - teacher) if lower_better else (teacher - hard)
    if span <= 0:
        return None
    return ((hard - distilled) if lower_better else (distilled - hard)) / span


def bootstrap(sizes: np.ndarray, hard: list[np.ndarray], distilled: list[np.ndarray], teacher: np.ndarray,
              lower_better: bool, seed: int) -> tuple[float, float | None]:
    """Standard errors, resampling held-out games (a game's positions are correlated), of the seeds' mean
    difference distilled - hard and of the gap it closes."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(sizes), size=(BOOTSTRAP_DRAWS, len(sizes)))
    weights = sizes[picks]

    def mean_of(per_game_values: np.ndarray) -> np.ndarray:
        return (weights * per_game_values[picks]).sum(axis=1) / weights.sum(axis=1)

    h = np.mean([mean_of(v) for v in hard], axis=0)
    d = np.mean([mean_of(v) for v in distilled], axis=0)
    t = mean_of(teacher)
    span = (h - t) if lower_better else (t - h)
    gain = (h - d) if lower_better else (d - h)
    gaps = np.where(span > 0, gain / np.where(span > 0, span, 1.0), np.nan)
    return float(np.std(d - h, ddof=1)), (float(np.nanstd(gaps, ddof=1)) if np.isfinite(gaps).any() else None)


def summarise(sizes, teacher: dict, scored: dict[str, list[dict]], runs: dict[str, list[dict]]) -> dict:
    """The arms' figures (mean and SE over seeds), the differences and the gaps closed."""
    arms = {}
    for arm, per_seed in scored.items():
        figures = {}
        for name, _, _ in METRICS:
            values = [pooled(sizes, s[name]) for s in per_seed if name in s]
            if values:
                figures[name], figures[f"{name}_se"] = float(np.mean(values)), seed_se(values)
        figures["per_seed"] = [{**runs[arm][i], **{name: pooled(sizes, s[name]) for name, _, _ in METRICS if name in s}}
                               for i, s in enumerate(per_seed)]
        arms[arm] = figures
    result = {"arms": arms}
    if "hard" in scored and "distilled" in scored:
        gaps, differences = {}, {}
        for index, (name, _, lower_better) in enumerate(METRICS):
            t = pooled(sizes, teacher[name])
            per_seed = [gap(pooled(sizes, h[name]), pooled(sizes, d[name]), t, lower_better)
                        for h, d in zip(scored["hard"], scored["distilled"])]
            diff_se, gap_se = bootstrap(sizes, [h[name] for h in scored["hard"]],
                                        [d[name] for d in scored["distilled"]], teacher[name], lower_better, index)
            diffs = [pooled(sizes, d[name]) - pooled(sizes, h[name])
                     for h, d in zip(scored["hard"], scored["distilled"])]
            differences[name] = {"distilled_minus_hard": float(np.mean(diffs)), "se_seeds": seed_se(diffs),
                                 "se_games": diff_se}
            known = [g for g in per_seed if g is not None]
            gaps[name] = float(np.mean(known)) if len(known) == len(per_seed) else None
            gaps[f"{name}_se"] = seed_se(known) if len(known) == len(per_seed) else None
            gaps[f"{name}_se_games"] = gap_se
            gaps[f"{name}_per_seed"] = per_seed
        result["gap_closed"], result["differences"] = gaps, differences
    return result


# ----------------------------------------------------------------------------------------------- match

def engine_match(args, pairs: list[tuple[Path, Path]], nodes: int) -> dict:
    """distilled vs hard in lc0 at `nodes`, the games split over the seeds' pairs (each its own openings),
    pooled into one pentanomial Elo."""
    from lc0distill.engine.locate import EngineNotFound, find_engine
    from lc0distill.match.match import MatchOptions, run_match
    from lc0distill.match.openings import builtin_openings
    from lc0distill.match.players import DEFAULT_ENGINE_OPTIONS, UciLimits
    from lc0distill.match.stats import GameCounts, Pentanomial, elo_estimate
    from lc0distill.match.tally import per_pairing

    try:
        find_engine()
    except EngineNotFound as error:
        return {"skipped": str(error)}
    openings = builtin_openings()
    per_pair = max(2, -(-args.match_games // len(pairs) // 2) * 2)
    wins = draws = losses = 0
    pentanomial = [0] * 5
    for index, (distilled, hard) in enumerate(pairs):
        start = index * per_pair // 2
        chosen = tuple(openings[(start + i) % len(openings)] for i in range(per_pair // 2))
        options = MatchOptions(engine="lc0", limits=UciLimits(nodes=nodes), games=per_pair, openings=chosen,
                               concurrency=2, engine_options=DEFAULT_ENGINE_OPTIONS,
                               pgn=args.out / f"match-nodes{nodes}-pair{index}.pgn")
        options.pgn.unlink(missing_ok=True)
        outcome = run_match([str(distilled), str(hard)], options, lambda result, results: None)
        if outcome.failure is not None:
            return {"error": str(outcome.failure)}
        pairing = per_pairing(outcome.results)[(0, 1)]
        wins, draws, losses = wins + pairing.games.wins, draws + pairing.games.draws, losses + pairing.games.losses
        pentanomial = [a + b for a, b in zip(pentanomial, pairing.pentanomial)]
        say(f"  match at {nodes} nodes, pair {index}: +{pairing.games.wins} ={pairing.games.draws} "
            f"-{pairing.games.losses}")
    estimate = elo_estimate(Pentanomial.from_counts(pentanomial), GameCounts(wins, draws, losses))

    def number(value):
        return float(value) if value is not None and np.isfinite(value) else None

    return {"elo": number(estimate.elo), "elo_low": number(estimate.elo_low), "elo_high": number(estimate.elo_high),
            "games": wins + draws + losses, "wins": wins, "draws": draws, "losses": losses,
            "pentanomial": pentanomial, "los": number(estimate.los)}


# ----------------------------------------------------------------------------------------------- report

def table(result: dict) -> str:
    arms, teacher = result["arms"], result["teacher"]
    lines = [f"| {result['scored_on']} ({result['scored_positions']:,} positions, {result['scored_games']} games) "
             f"| {' | '.join(label for _, label, _ in METRICS)} |", "|---" * (len(METRICS) + 1) + "|"]
    lines.append(f"| teacher | {' | '.join(f'{teacher[n]:.4f}' for n, _, _ in METRICS)} |")
    for arm, figures in arms.items():
        cells = [f"{figures[n]:.4f}" + (f" ± {figures[n + '_se']:.4f}" if figures.get(n + "_se") else "")
                 if n in figures else "-" for n, _, _ in METRICS]
        lines.append(f"| {arm} ({result['positions'][arm]:,} positions, {result['steps'][arm]:,} steps) | "
                     f"{' | '.join(cells)} |")
    if "gap_closed" in result:
        gaps = result["gap_closed"]
        cells = [f"{100 * gaps[n]:.1f}%" + (f" ± {100 * gaps[n + '_se']:.1f}" if gaps.get(n + "_se") else "")
                 if gaps.get(n) is not None else "n/a" for n, _, _ in METRICS]
        lines.append(f"| gap closed | {' | '.join(cells)} |")
        diffs = result["differences"]
        cells = [f"{diffs[n]['distilled_minus_hard']:+.4f} (SE "
                 + (f"{diffs[n]['se_seeds']:.4f} seeds, " if diffs[n]["se_seeds"] is not None else "")
                 + f"{diffs[n]['se_games']:.4f} games)" for n, _, _ in METRICS]
        lines.append(f"| distilled - hard | {' | '.join(cells)} |")
    return "\n".join(lines) + match_lines(result.get("match", {}), "distilled vs hard")


def match_lines(matches: dict, pairing: str) -> str:
    """One paragraph per node count: the games, the score and the Elo with its 95% interval."""
    text = ""
    for key, match in matches.items():
        if "elo" in match:
            low, high = match["elo_low"], match["elo_high"]
            bounds = f"[{low:+.0f}, {high:+.0f}]" if low is not None and high is not None else "(unbounded)"
            text += (f"\n\nlc0 at {key.split('_')[1]} node(s), {pairing}, {match['games']} games: "
                     f"+{match['wins']} ={match['draws']} -{match['losses']}, Elo "
                     f"{'inf' if match['elo'] is None else format(match['elo'], '+.0f')} 95% {bounds}")
        else:
            text += f"\n\nlc0 at {key.split('_')[1]} node(s): {match.get('skipped') or match.get('error')}"
    return text


def settings(args) -> dict:
    return {"student": args.student, "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
            "teacher_weight": args.teacher_weight, "teacher_schedule": args.teacher_schedule,
            "teacher_schedule_at": args.teacher_schedule_at, "temperature": args.temperature,
            "kl_form": args.kl_form, "value_distill": args.value_distill, "played_games": args.played_games,
            "search_games": args.search_games, "search_visits": args.search_visits, "eval_every": args.eval_every}


# ----------------------------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    return run_and_report(parse_args(argv), run_experiment, table, "distill_experiment.py")


def run_and_report(args, run, as_table, prog: str) -> int:
    """Run the experiment into args.out, write OUT/result.json and OUT/result.md, print the table (and the JSON
    with --json); a user mistake is one line and exit status 2."""
    started = time.perf_counter()
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        result = run(args)
    except Lc0DistillError as error:
        say(f"{prog}: {error}")
        return 2
    result["seconds"] = round(time.perf_counter() - started, 1)
    write_json(args.out / "result.json", result, allow_nan=True)
    write_atomic(args.out / "result.md", (as_table(result) + "\n").encode())
    say("\n" + as_table(result) + f"\n\ntotal time {result['seconds'] / 60:.1f} min")
    if args.json:
        print(json.dumps(result))
    return 0


def run_experiment(args) -> dict:
    teacher_net = load_net(args.teacher).eval()
    split = split_games([str(p) for p in args.data], args.test_ratio, args.val_ratio)
    if args.quick:  # a smoke run: a few games of each part
        split = Split(split.train[:40], split.validation[:8], split.held_out[:8])
    lists = {name: write_list(args.out / f"{name}_games.txt", getattr(split, name))
             for name in ("train", "validation", "held_out")}
    say(f"data: {len(split.train)} training, {len(split.validation)} validation and {len(split.held_out)} "
        f"held-out games; teacher {args.teacher}")
    played = played_games(args, args.played_temperature, args.played_random_plies)
    searched = teacher_games(args, f"search-{args.search_games}-v{args.search_visits}", args.search_games,
                             ["--engine", "lc0", "--visits", str(args.search_visits)])
    data = {"hard": [lists["train"], *played], "distilled": [lists["train"], *played]}
    if searched:
        data["search"] = [lists["train"], *searched]
    cache = teacher_cache(args, args.out, [*data["distilled"], lists["validation"]])
    runs = args.out / "runs"
    jobs = [Job(arm, seed, arm_config(args, arm, seed, paths, lists["validation"], cache, runs))
            for seed in range(args.seeds) for arm, paths in data.items()]
    train_all(jobs, args.jobs)

    scored_files = split.held_out if args.evaluate_on == "held-out" else split.validation
    games = scored_games(scored_files, 1024 if args.quick else None)
    say(f"scoring on {args.evaluate_on} games: {sum(len(b) for g in games for b in g):,} positions")
    teacher = CachedTeacher(teacher_net)
    sizes, teacher_metrics = per_game(teacher, games)
    scored, run_info = {}, {}
    for job in jobs:
        scored.setdefault(job.arm, []).append(per_game(load_model(job.run_dir / "best.pt"), games, teacher)[1])
        run_info.setdefault(job.arm, []).append({"seed": job.seed, "run": str(job.run_dir), **best_of(job)})
    digests = [(run_info["hard"][s]["data_digest"], run_info["distilled"][s]["data_digest"]) for s in range(args.seeds)]
    result = {"equal_positions": all(h is not None and h == d for h, d in digests),
              "equal_steps": len({job.config.train.steps for job in jobs}) == 1, "seeds": args.seeds,
              "settings": settings(args), "scored_on": args.evaluate_on, "scored_games": len(games),
              "scored_positions": int(sizes.sum()),
              "teacher": {"path": str(args.teacher), "sha256": file_sha256(args.teacher),
                          **{name: pooled(sizes, teacher_metrics[name]) for name, _, _ in METRICS}}}
    result.update(summarise(sizes, teacher_metrics, scored, run_info))
    result["positions"] = {arm: positions_in(paths) for arm, paths in data.items()}
    result["steps"] = {arm: args.steps for arm in data}
    result["positions_seen"] = {arm: args.steps * args.batch_size for arm in data}
    if args.match_games and args.match_nodes:
        pairs = [(Path(d["run"]) / "best.pt", Path(h["run"]) / "best.pt")
                 for d, h in zip(run_info["distilled"], run_info["hard"])]
        result["match"] = {f"nodes_{nodes}": engine_match(args, pairs, nodes) for nodes in args.match_nodes}
    return result


if __name__ == "__main__":
    sys.exit(main())
