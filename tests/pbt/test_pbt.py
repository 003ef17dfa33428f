"""Population-based training on Ray Tune: the search and explore, a member's config, and real PBT runs
(two members of a 16x2 student kickstarted by maia-1100 and maia-1900 on lc0's self-play data): an exploit
copies the better member's weights and hyperparameters exactly; a killed run resumes from its checkpoints."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lc0distill.config import load_config
from lc0distill.errors import Lc0DistillError
from lc0distill.pbt.config import PbtRunConfig
from lc0distill.pbt.hyper import Explorer, initial_population, member_config, recipe_values, search_of, teacher_lambdas
from tests.conftest import SHARED, SELFPLAY

NETS = (SHARED / "nets" / "maia-1100.pb.gz", SHARED / "nets" / "maia-1900.pb.gz")


def _recipe(tmp_path: Path, steps=12, every=4, **pbt) -> Path:
    tree = {
        "data": {"paths": [str(SELFPLAY)], "workers": 0, "batch_size": 32, "sample_rate": 1, "shuffle_buffer": 200},
        "net": {"size": "16x2"},
        "teacher": {"nets": [{"path": str(NETS[0]), "weight": 1.0}, {"path": str(NETS[1]), "weight": 0.5}]},
        "train": {"steps": steps, "run_dir": str(tmp_path / "pbt"), "log_every": 4, "eval_positions": 64},
        "pbt": {"population": 2, "perturb_every": every, "quantile_fraction": 0.5, **pbt},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def _config(tmp_path, **pbt) -> PbtRunConfig:
    return load_config(_recipe(tmp_path, **pbt), validate=PbtRunConfig)


# -- the search, without Ray --------------------------------------------------------------------------------

def test_member_zero_starts_from_the_recipe_and_the_others_in_bounds(tmp_path):
    config = _config(tmp_path, population=6)
    search = search_of(config)
    population = initial_population(config, search, 6)
    assert population[0] == {"lr": 0.02, "temperature": 1.0, "lambda_maia-1100": 1.0, "lambda_maia-1900": 0.5}
    assert len({json.dumps(member, sort_keys=True) for member in population}) == 6
    for member in population[1:]:
        assert 1e-4 <= member["lr"] <= 0.2 and 1.0 <= member["temperature"] <= 3.0
        assert all(member[f"lambda_{n}"] == 0 or 0.02 <= member[f"lambda_{n}"] <= 2 for n in ("maia-1100", "maia-1900"))


def test_explore_perturbs_within_bounds_and_switches_weak_teachers_off(tmp_path):
    config = _config(tmp_path, resample_probability=0.0, perturbation_factors=(0.5, 0.5))
    explorer = Explorer(search_of(config))
    hyper = {"lr": 0.15, "temperature": 1.2, "lambda_maia-1100": 0.03, "lambda_maia-1900": 1.0}
    new = explorer({"recipe": "r", "hyper": hyper})
    assert new["recipe"] == "r"
    assert new["hyper"] == {"lr": 0.075, "temperature": 1.0, "lambda_maia-1100": 0.0, "lambda_maia-1900": 0.5}
    grown = Explorer(search_of(_config(tmp_path, resample_probability=0.0, perturbation_factors=(4.0, 4.0))))
    assert grown.explore(hyper) == {"lr": 0.2, "temperature": 3.0, "lambda_maia-1100": 0.12, "lambda_maia-1900": 2.0}


def test_a_restored_explorer_draws_anew_and_the_first_start_keeps_its_seed(tmp_path):
    import pickle

    search = search_of(_config(tmp_path, resample_probability=0.5))
    hyper = {"lr": 0.02, "temperature": 1.2, "lambda_maia-1100": 1.0, "lambda_maia-1900": 0.5}
    restores = tmp_path / "restores.json"
    restores.write_text('{"restores": 0}')
    first = Explorer(search, restores)
    draws = [first.explore(hyper) for _ in range(3)]
    unseeded = Explorer(search)  # no count: the stream of pbt.seed alone, which a first start keeps
    assert draws == [unseeded.explore(hyper) for _ in range(3)]
    assert len({json.dumps(d, sort_keys=True) for d in draws}) == 3
    # Ray pickles the scheduler with the experiment; the restored copy reads the driver's count when it draws.
    restored = pickle.loads(pickle.dumps(first))
    restores.write_text('{"restores": 1}')
    again = [restored.explore(hyper) for _ in range(3)]
    assert again != draws
    def restored_draws(count):
        restores.write_text(json.dumps({"restores": count}))
        copy = pickle.loads(pickle.dumps(first))
        return [copy.explore(hyper) for _ in range(3)]

    assert restored_draws(2) not in (draws, again)
    assert restored_draws(1) == again  # each restore's draws are reproducible
    restores.write_text("[1]")
    with pytest.raises(Lc0DistillError, match="restores.json: not a count of restores"):
        pickle.loads(pickle.dumps(first)).explore(hyper)


def test_factorised_weights_keep_shares_summing_to_one(tmp_path):
    config = _config(tmp_path, teacher_weights="factorised", resample_probability=0.5)
    search = search_of(config)
    start = recipe_values(config, search)
    assert start["weight"] == 1.5 and start["share_maia-1100"] == pytest.approx(2 / 3)
    assert teacher_lambdas(start, search) == pytest.approx({"maia-1100": 1.0, "maia-1900": 0.5})
    explorer = Explorer(search)
    hyper = start
    for _ in range(50):
        hyper = explorer.explore(hyper)
        assert hyper["share_maia-1100"] + hyper["share_maia-1900"] == pytest.approx(1.0)
        assert 0 <= hyper["weight"] <= 2


def test_member_config_carries_its_hyperparameters(tmp_path):
    config = _config(tmp_path)
    search = search_of(config)
    hyper = {"lr": 0.05, "temperature": 2.5, "lambda_maia-1100": 0.0, "lambda_maia-1900": 1.25}
    member = member_config(config, search, hyper, 3)
    assert member.train.lr.lr == 0.05 and member.loss.temperature.value_at(100) == 2.5
    assert [e.weight.weight for e in member.teacher.entries] == [0.0, 1.25]
    assert {e.weight.kind for e in member.teacher.entries} == {"pbt"}
    assert member.train.run_dir == str(tmp_path / "pbt" / "members" / "member-3")
    assert member.train.seed == 3 and member.train.checkpoint_every == 4
    assert member.data.seed == config.data.seed  # every member is ranked on the same held-out positions


@pytest.mark.parametrize("override, message", [
    ("train.lr.kind=steps", "train.lr.kind"),
    ("loss.temperature.kind=linear", "constant temperature"),
    ("pbt.perturb_every=50", "more than train.steps"),
    ("pbt.teacher_weight.high=20", "above 10"),
    ("pbt.temperature={low: 0, high: 3}", "must be above 0"),
])
def test_search_errors(tmp_path, override, message):
    extra = ["train.lr.lr_values=[0.1]"] if "steps" in override else []
    extra += ["loss.temperature.steps=10"] if "linear" in override else []
    config = load_config(_recipe(tmp_path), [override, *extra], validate=PbtRunConfig)
    with pytest.raises(Lc0DistillError, match=message):
        search_of(config)


def test_explore_factors_must_be_positive(tmp_path):
    with pytest.raises(Lc0DistillError, match="perturbation_factors"):
        load_config(_recipe(tmp_path), ["pbt.perturbation_factors=[0,1.2]"], validate=PbtRunConfig)


def test_an_ensemble_recipe_needs_a_weight_per_teacher(tmp_path):
    config = load_config(_recipe(tmp_path), [f"teacher.nets=[{NETS[0]},{NETS[1]}]"], validate=PbtRunConfig)
    with pytest.raises(Lc0DistillError, match="its own weight"):
        search_of(config)
    fixed = load_config(_recipe(tmp_path), [f"teacher.nets=[{NETS[0]},{NETS[1]}]", "pbt.teacher_weights=fixed"],
                        validate=PbtRunConfig)
    assert search_of(fixed).teachers == ()


def test_only_the_duplicate_checkpoint_deletion_error_is_dropped():
    pytest.importorskip("ray.tune", reason="Ray Tune is the optional extra: pip install -e '.[pbt]'")
    import logging

    from lc0distill.pbt.driver import _DuplicateCheckpointFilter

    def record(error):
        try:
            raise error
        except Exception:
            return logging.LogRecord("ray.tune.execution.tune_controller", logging.ERROR, __file__, 1,
                                     "Trial %s: Error handling checkpoint %s", ("t", "c"), sys.exc_info())

    keep = _DuplicateCheckpointFilter().filter
    assert not keep(record(FileNotFoundError("Path not found")))
    assert keep(record(OSError("disk full")))  # any other failure to handle a checkpoint is shown
    assert keep(logging.LogRecord("x", logging.ERROR, __file__, 1, "Trial failed", (), None))


def _event(kind, step, fingerprint, source=None, source_step=None, lr=0.02):
    """A "pbt" record as a member writes it; an exploit's source_fingerprint is its fingerprint (checked)."""
    event = {"kind": "pbt", "event": kind, "step": step, "fingerprint": fingerprint, "hyperparameters": {"lr": lr}}
    if kind == "exploit":
        event.update(source=source, source_step=source_step, source_fingerprint=fingerprint)
    return event


def _kept_steps(events):
    from lc0distill.pbt.report import kept_history

    return [(e["event"], e["step"], e["fingerprint"]) for e in kept_history(events)]


def test_a_resume_drops_what_followed_the_checkpoint_it_loaded():
    # Resumed at 16 twice: the report at 20 between them was lost by a kill (Tune's saved state lagged).
    resumed = [_event("fresh", 0, "f0"), _event("report", 16, "a"), _event("resume", 16, "a"),
               _event("report", 20, "b"), _event("resume", 16, "a"), _event("report", 20, "b"),
               _event("report", 24, "c")]
    assert _kept_steps(resumed) == [("fresh", 0, "f0"), ("report", 16, "a"), ("resume", 16, "a"),
                                    ("report", 20, "b"), ("report", 24, "c")]
    # The same step reported twice with other weights (an exploit of a lagging donor in between): the resume
    # continues from the report whose fingerprint it loaded, the later one.
    twice = [_event("report", 12, "own"), _event("exploit", 8, "x", "member-0", 8, lr=0.05),
             _event("report", 12, "clone"), _event("report", 16, "lost"), _event("resume", 12, "clone")]
    assert _kept_steps(twice) == [("report", 12, "own"), ("exploit", 8, "x"), ("report", 12, "clone"),
                                  ("resume", 12, "clone")]


def test_a_replayed_exploit_replaces_the_branch_it_started():
    # member-0 of a CI run: exploited member-1's step 8, reported 12, was restarted at 12 by Tune, reported 16;
    # killed; the restore gave it the clone of member-1's step 8 again (its saved state was that far behind).
    replayed = [_event("fresh", 0, "f0"), _event("report", 8, "r8"),
                _event("exploit", 8, "m1", "member-1", 8, lr=0.06), _event("report", 12, "r12"),
                _event("resume", 12, "r12"), _event("report", 16, "r16"),
                _event("exploit", 8, "m1", "member-1", 8, lr=0.06), _event("report", 12, "r12"),
                _event("report", 16, "r16"), _event("resume", 16, "r16"), _event("report", 20, "r20")]
    assert _kept_steps(replayed) == [("fresh", 0, "f0"), ("report", 8, "r8"), ("exploit", 8, "m1"),
                                     ("report", 12, "r12"), ("report", 16, "r16"), ("resume", 16, "r16"),
                                     ("report", 20, "r20")]
    # Asynchronous PBT cloning a lagging donor: the member's own report at 600 was real (Tune ranked it); a
    # second exploit of another checkpoint, or of the same one explored otherwise, is a new one.
    lagging = [_event("report", 600, "own"), _event("exploit", 500, "d500", "member-0", 500),
               _event("report", 600, "c600"), _event("exploit", 600, "d600", "member-1", 600),
               _event("report", 700, "c700"), _event("exploit", 600, "d600", "member-1", 600, lr=0.03)]
    assert _kept_steps(lagging) == [(e["event"], e["step"], e["fingerprint"]) for e in lagging]


# -- real runs on Ray ---------------------------------------------------------------------------------------

def _need_artifacts():
    pytest.importorskip("ray.tune", reason="Ray Tune is the optional extra: pip install -e '.[pbt]'")
    for path in (SELFPLAY, *NETS):
        if not path.exists():
            pytest.skip(f"reference artifact {path} is absent (../shared holds lc0's own files; see README)")


def _pbt_command(recipe: Path, *extra) -> list[str]:
    return [sys.executable, "-m", "lc0distill", "pbt", "--config", str(recipe), "--json", *extra]


def _records(run_dir: Path, member: str) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "members" / member / "metrics.jsonl").read_text().splitlines()]


def _events(run_dir: Path, member: str, kind="pbt") -> list[dict]:
    return [r for r in _records(run_dir, member) if r["kind"] == kind]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    _need_artifacts()
    tmp_path = tmp_path_factory.mktemp("pbt")
    # Synchronous PBT: both members stop at every perturbation point and the worse one always exploits, so the
    # run has exploits however Ray happens to schedule the two (asynchronous PBT skips a finished donor).
    recipe = _recipe(tmp_path, synch=True)
    done = subprocess.run(_pbt_command(recipe), capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp_path / "pbt", json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_exploit_copies_weights_and_hyperparameters_exactly(finished_run):
    run_dir, summary = finished_run
    exploits = [(member, event) for member in ("member-0", "member-1") for event in _events(run_dir, member)
                if event["event"] == "exploit"]
    assert exploits, "two members, the worse half exploiting at every report: some member must have exploited"
    global_log = [json.loads(line) for line in (run_dir / "ray" / "pbt" / "pbt_global.txt").read_text().splitlines()]
    for member, event in exploits:
        # The source's own record of the checkpoint it reported at that step, read from its metrics.jsonl.
        saved = [e for e in _events(run_dir, event["source"]) if e["event"] == "report"
                 and e["step"] == event["source_step"]]
        assert saved and event["fingerprint"] == saved[-1]["fingerprint"]  # the same weights and optimizer state
        assert event["step"] == event["source_step"]  # continuing from the source's step
        assert event["source_hyperparameters"] == saved[-1]["hyperparameters"]
        # Tune's own log: cloned from that config, explored into the one the member then trained with.
        assert any(line[4]["hyper"] == event["source_hyperparameters"] and line[5]["hyper"] == event["hyperparameters"]
                   for line in global_log)
        # The member's next logged training step (in the file, after the exploit) used them.
        records = _records(run_dir, member)
        after = records[records.index(event) + 1:]
        trained = next(r for r in after if r["kind"] == "train")
        hyper = event["hyperparameters"]
        assert event["step"] < trained["step"] <= event["step"] + 4
        assert trained["lr"] == pytest.approx(hyper["lr"])
        assert trained["temperature"] == pytest.approx(hyper["temperature"])
        for name in ("maia-1100", "maia-1900"):
            assert trained[f"teacher_weight/{name}"] == pytest.approx(hyper[f"lambda_{name}"])
    assert all(e["weights_identical"] for e in summary["exploits"])


@pytest.mark.slow
def test_pbt_run_leaves_the_best_net_table_and_figure(finished_run):
    from lc0distill.lc0.weights import read_net

    run_dir, summary = finished_run
    assert summary["population"] == 2 and {m["step"] for m in summary["members"]} == {12}
    losses = {m["member"]: m["policy_loss"] for m in summary["members"]}
    assert summary["best"]["policy_loss"] == min(losses.values()) == losses[summary["best"]["member"]]
    net = read_net(run_dir / "best.pb.gz")
    assert net.config.filters == 16 and net.config.blocks == 2
    table = (run_dir / "pbt.md").read_text().splitlines()
    assert table[0].startswith("| member | step | lr | lambda maia-1100 | lambda maia-1900 | T | policy_loss")
    reports = sum(1 for m in ("member-0", "member-1") for e in _events(run_dir, m) if e["event"] == "report")
    assert len(table) == 2 + reports
    assert (run_dir / "pbt.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run_dir / "ray" / "pbt" / "tuner.pkl").exists()
    # Started again, the finished run (a synchronous one, which Tune could not resume) is summarised again.
    again = subprocess.run(_pbt_command(run_dir.parent / "recipe.yaml"), capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "has finished: its summary again" in again.stderr, again.stderr[-2000:]
    assert json.loads(again.stdout.strip().splitlines()[-1]) == summary


@pytest.mark.slow
def test_a_killed_pbt_run_resumes(tmp_path):
    _need_artifacts()
    recipe = _recipe(tmp_path, steps=24)
    run_dir = tmp_path / "pbt"
    members = ("member-0", "member-1")
    process = subprocess.Popen(_pbt_command(recipe), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:  # until both members reported step 8
        if all(max(_reported_steps(run_dir, m), default=0) >= 8 for m in members):
            break
        time.sleep(0.2)
    reached = {m: max(_reported_steps(run_dir, m), default=0) for m in members}
    # Tune records a reported checkpoint in its experiment state within TUNE_GLOBAL_CHECKPOINT_S (1 s, set by
    # the driver): after 2 s more, the checkpoints of the steps reached are Tune's, and none may be lost.
    time.sleep(2.0)
    # The exploits the members logged so far are in Tune's copied log (synced every second) before the kill:
    # what the test then asks is that the restore keeps them, not when Tune's copy happens.
    synced = _lines_with_exploits_synced(run_dir, members, deadline=time.monotonic() + 30)
    assert process.poll() is None, "the run ended before it could be killed: " + process.stderr.read().decode()[-2000:]
    os.killpg(process.pid, signal.SIGKILL)  # the driver and the Ray processes it started
    process.wait()
    lines_before = {m: len((run_dir / "members" / m / "metrics.jsonl").read_text().splitlines()) for m in members}
    assert all(steps >= 8 for steps in reached.values()), reached
    done = subprocess.run(_pbt_command(recipe), capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming the PBT run" in done.stderr
    assert json.loads((run_dir / "ray" / "restores.json").read_text()) == {"restores": 1}  # seeds explore anew
    # Tune's log of the exploits made before the kill is kept (Tune starts pbt_global.txt anew at a restore).
    before = _exploits(run_dir, members, synced)
    if before:
        kept_log = (run_dir / "ray" / "pbt" / "pbt_global.before-restore-1.txt").read_text().splitlines()
        assert _all_in_log(before, kept_log)
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert {m["step"] for m in summary["members"]} == {24}
    for member in members:
        events = _events(run_dir, member)
        assert [e["event"] for e in events].count("fresh") == 1  # a fresh start once, at the beginning
        records = _records(run_dir, member)
        after_kill = [r for r in records[lines_before[member]:] if r["kind"] == "pbt"]
        restarted = next(e for e in after_kill if e["event"] in ("fresh", "resume", "exploit"))
        if restarted["event"] == "resume":  # its own last checkpoint Tune held: no segment it reported is lost
            assert restarted["step"] >= reached[member]
            # the very weights of a report at that step before the kill (a step can be reported twice, with other
            # weights, when an exploit of a lagging donor came between)
            saved = {r["fingerprint"] for r in records[:lines_before[member]]
                     if r["kind"] == "pbt" and r["event"] == "report" and r["step"] == restarted["step"]}
            assert restarted["fingerprint"] in saved
        else:  # killed between an exploit and its restart: Tune restores the clone it had decided on
            assert restarted["event"] == "exploit" and restarted["fingerprint"] == restarted["source_fingerprint"]
    # The segments trained again after the kill replace the lost reports: no report is listed twice (a replayed
    # segment reports the very weights again; async PBT cloning a lagging donor reports a step again, with other
    # weights, even with the same hyperparameters), and the table has a row for each report kept.
    from lc0distill.pbt.report import kept_history, member_events

    kept = {m: [e for e in kept_history(member_events(run_dir / "members" / m)) if e["event"] == "report"]
            for m in members}
    for member, reports in kept.items():
        fingerprints = [r["fingerprint"] for r in reports]
        assert len(fingerprints) == len(set(fingerprints)), member
        assert [r["step"] for r in reports][-1] == 24
    rows = (run_dir / "pbt.md").read_text().splitlines()[2:]
    assert len(rows) == sum(len(reports) for reports in kept.values())


def _exploits(run_dir: Path, members, lines: dict) -> list[dict]:
    """The exploit events in each member's first lines[member] lines of metrics."""
    return [r for m in members for r in _records(run_dir, m)[:lines[m]] if r.get("event") == "exploit"]


def _all_in_log(exploits: list[dict], log_lines: list[str]) -> bool:
    """Every exploit has a line of Tune's pbt_global log with its new hyperparameters."""
    return all(any(json.loads(line)[5]["hyper"] == e["hyperparameters"] for line in log_lines) for e in exploits)


def _lines_with_exploits_synced(run_dir: Path, members, deadline: float) -> dict:
    """Waits until Tune's log in ray/ holds every exploit logged by the members so far; their line counts."""
    while True:
        lines = {m: len((run_dir / "members" / m / "metrics.jsonl").read_text().splitlines()) for m in members}
        log = run_dir / "ray" / "pbt" / "pbt_global.txt"
        log_lines = log.read_text().splitlines() if log.is_file() else []
        try:
            if _all_in_log(_exploits(run_dir, members, lines), log_lines):
                return lines
        except json.JSONDecodeError:  # a line being written
            pass
        assert time.monotonic() < deadline, "Tune's pbt_global.txt in ray/ lacks exploits the members logged"
        time.sleep(0.2)


def _reported_steps(run_dir: Path, member: str) -> list[int]:
    try:
        return [e["step"] for e in _events(run_dir, member) if e["event"] == "report"]
    except (FileNotFoundError, json.JSONDecodeError):
        return []
