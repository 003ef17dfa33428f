"""Runs that cannot go silently wrong: bad records skipped and counted, the non-finite guard, checks at start
(input formats, value targets the data lacks, resuming another run), and what a run leaves to look at."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from lc0distill.checkpoint import LATEST, load_checkpoint
from lc0distill.chunks.reader import read_chunk
from lc0distill.chunks.writer import write_chunk
from lc0distill.cli import main
from lc0distill.export.onnx_graph import build_onnx
from lc0distill.models.config import NetConfig
from lc0distill.models.net import SEResNet
from lc0distill.models.store import load_model, save_model
from tests.conftest import SHARED

TINY = ["data.workers=0", "data.batch_size=32", "data.sample_rate=1", "data.shuffle_buffer=256", "net.size=8x1",
        "train.eval_positions=64", "export.lc0=false", "train.log_every=5", "train.eval_every=0"]


def _train(capsys, paths, run_dir, steps, *extra) -> tuple[int, str, str]:
    joined = ",".join(str(p) for p in paths)
    code = main(["train", f"data.paths=[{joined}]", *TINY, f"train.steps={steps}", f"train.run_dir={run_dir}", *extra])
    out, err = capsys.readouterr()
    return code, out, err


def _metrics(run_dir: Path, kind: str) -> list[dict]:
    return [r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if r["kind"] == kind]


def _assert_one_line_error(err: str, *fragments: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("lc0distill: error:")]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def _finite(path: Path) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in load_model(path).state_dict().values() if t.is_floating_point())


@pytest.fixture()
def good_chunks(tmp_path, lc0_data) -> Path:
    folder = tmp_path / "data"
    shutil.copytree(lc0_data / "v6-fmt1-maia1900", folder)
    return folder


def test_a_nan_record_is_skipped_counted_and_named(tmp_path, capsys, good_chunks):
    """One NaN best_q and one NaN policy entry (the q_ratio blend reads best_q): the run trains on the rest,
    counts both records, names them, and ends with finite weights."""
    victim = sorted(good_chunks.glob("*.gz"))[0]
    records = read_chunk(str(victim)).records.copy()
    records["best_q"][3] = np.nan
    legal = np.flatnonzero(records["probabilities"][7] >= 0)
    records["probabilities"][7, legal[0]] = np.inf
    write_chunk(victim, records)
    run_dir = tmp_path / "run"
    code, out, err = _train(capsys, [good_chunks], run_dir, 70, "loss.q_ratio=0.5", "data.test_ratio=0")
    assert code == 0, err  # 70 x 32 positions: one pass over the 1,789 records at least
    assert "Traceback" not in err
    train = _metrics(run_dir, "train")
    # counted each time they are skipped: twice per pass over the data (70 steps read part of a second pass)
    assert train[-1]["bad_records"] in (2, 4) and train[-1]["skipped_steps"] == 0
    assert f"{victim}: record 3: field best_q: not a finite number" in out
    assert f"{victim}: record 7: field probabilities" in out
    assert _finite(run_dir / "final.pt")
    assert all(value is None or np.isfinite(value) for record in train for value in record.values()
               if isinstance(value, float))


def test_strict_mode_turns_a_bad_record_into_an_error(tmp_path, capsys, good_chunks):
    victim = sorted(good_chunks.glob("*.gz"))[0]
    records = read_chunk(str(victim)).records.copy()
    records["result_q"][5] = np.nan
    write_chunk(victim, records)
    for workers in ("0", "1"):
        code, _, err = _train(capsys, [good_chunks], tmp_path / f"strict{workers}", 70, "data.strict=true",
                              f"data.workers={workers}", "data.test_ratio=0")
        assert code == 2
        _assert_one_line_error(err, str(victim), "record 5", "field result_q")


def _nan_net(path: Path, input_format: int = 1) -> None:
    torch.manual_seed(0)
    net = SEResNet(NetConfig(filters=8, blocks=1, input_format=input_format)).eval()
    with torch.no_grad():
        net.value.fc2.weight.fill_(float("nan"))
    save_model(net, path)


def test_a_nan_teacher_file_is_refused_at_start(tmp_path, capsys, good_chunks):
    teacher = tmp_path / "nan-teacher.pt"
    _nan_net(teacher)
    code, _, err = _train(capsys, [good_chunks], tmp_path / "run", 10, f"teacher.nets=[{teacher}]")
    assert code == 2
    _assert_one_line_error(err, str(teacher), "value.fc2.weight", "non-finite")


def test_a_teacher_that_outputs_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, capsys, good_chunks):
    """An ONNX teacher (finite weights, too large) computing NaN: every step is skipped and named, then the run stops
    with an error; the checkpoint of the good steps before it is untouched and finite, and no final net is written."""
    run_dir = tmp_path / "run"
    code, _, err = _train(capsys, [good_chunks], run_dir, 20, "train.checkpoint_every=10")
    assert code == 0, err
    before = (run_dir / LATEST).read_bytes()
    (run_dir / "final.pt").unlink()
    torch.manual_seed(1)
    bad = SEResNet(NetConfig(filters=8, blocks=1)).eval()
    with torch.no_grad():  # finite weights (a NaN weight is refused when the file opens) that overflow to inf
        bad.policy.policy.weight.fill_(3e38)
    teacher = tmp_path / "teacher.onnx"
    model = build_onnx(bad)
    model.metadata_props.add(key="lc0distill.input_format", value="1")
    teacher.write_bytes(model.SerializeToString())
    code, out, err = _train(capsys, [good_chunks], run_dir, 40, "train.checkpoint_every=10",
                            f"teacher.nets=[{teacher}]", "train.max_skipped_steps=3", "train.skip_window=100")
    assert code == 2
    line = _assert_one_line_error(err, "4 of the last 100 batches had non-finite values",
                                  "train.max_skipped_steps=3", "policy_distill",
                                  "from the outputs of teacher teacher on finite positions")
    assert "record" in line  # the positions are named: chunk and record
    assert (run_dir / LATEST).read_bytes() == before
    assert load_checkpoint(run_dir / LATEST)["step"] == 20
    assert _finite(run_dir / LATEST) and not (run_dir / "final.pt").exists()
    skipped = _metrics(run_dir, "skipped")
    assert len(skipped) == 4 and all(s["step"] == 20 for s in skipped)
    assert all(Path(p.split(": record")[0]).parent == good_chunks for s in skipped for p in s["positions"])


@pytest.mark.parametrize("huge, message", [
    (1e300, "does not fit in float32"),  # the update itself overflows
    (1e30, "of the last 1000 batches had non-finite values"),  # finite but huge weights: every later loss is NaN
])
def test_a_learning_rate_that_blows_up_the_weights_stops_the_run(tmp_path, capsys, good_chunks, huge, message):
    """lr 0.02 for 10 steps, then a huge one: the run stops with an error, and the checkpoint of step 10 is
    what stays (no checkpoint or final net with non-finite weights is ever written)."""
    run_dir = tmp_path / "run"
    code, _, err = _train(capsys, [good_chunks], run_dir, 30, "train.checkpoint_every=5", "train.lr.kind=steps",
                          f"train.lr.lr_values=[0.02,{huge}]", "train.lr.lr_boundaries=[10]")
    assert code == 2
    _assert_one_line_error(err, message, "checkpoint")
    state = load_checkpoint(run_dir / LATEST)
    assert state["step"] == 10 and _finite(run_dir / LATEST)
    assert not (run_dir / "final.pt").exists()


def test_non_finite_numbers_in_a_config_are_refused(capsys):
    for override, key in (("train.lr.lr=.inf", "train.lr.lr"), ("loss.q_ratio=.nan", "loss.q_ratio"),
                          ("loss.temperature.start=.inf", "loss.temperature.start")):
        assert main(["train", "data.paths=[x]", override]) == 2
        _assert_one_line_error(capsys.readouterr().err, key, "finite")


def test_q_source_the_data_does_not_store_is_an_error_at_start(tmp_path, capsys, lc0_data):
    v4, v5 = lc0_data / "v4-maia1100", lc0_data / "v5-maia1100"
    code, _, err = _train(capsys, [v4, v5], tmp_path / "r1", 5, "loss.q_ratio=0.5", "data.q_source=played")
    assert code == 2
    _assert_one_line_error(err, "data.q_source=played", "played_q", "V6+", "V4 (", "V5 (")
    code, _, err = _train(capsys, [v4], tmp_path / "r2", 5, "loss.q_ratio=0.5", "data.q_source=orig")
    assert code == 2
    _assert_one_line_error(err, "orig_q", "V4 (")
    # With q_ratio 0 the value target is z alone: any q_source is fine, and root/best exist from V4 on.
    code, _, err = _train(capsys, [v4, v5], tmp_path / "r3", 5, "data.q_source=played")
    assert code == 0, err
    code, _, err = _train(capsys, [v4, v5], tmp_path / "r4", 5, "loss.q_ratio=1", "data.q_source=root")
    assert code == 0, err


def test_q_source_orig_skips_the_records_where_lc0_left_it_unknown(tmp_path, capsys, good_chunks):
    """lc0 stores orig_q only when the position was in its NN cache (else NaN): those records cannot give an
    orig target; they are skipped and counted, never trained on as NaN."""
    victim = sorted(good_chunks.glob("*.gz"))[0]
    records = read_chunk(str(victim)).records.copy()
    records["orig_q"][:10] = records["orig_d"][:10] = np.nan
    write_chunk(victim, records)
    run_dir = tmp_path / "run"
    code, out, err = _train(capsys, [good_chunks], run_dir, 70, "loss.q_ratio=0.5", "data.q_source=orig",
                            "data.test_ratio=0")
    assert code == 0, err
    assert _metrics(run_dir, "train")[-1]["bad_records"] in (10, 20)
    assert f"{victim}: record 0: field orig_q: unknown (NaN: lc0 did not store it)" in out
    assert _finite(run_dir / "final.pt")
    # The same data with q from best_q: nothing is missing, nothing skipped.
    code, _, err = _train(capsys, [good_chunks], tmp_path / "best", 10, "loss.q_ratio=0.5", "data.test_ratio=0")
    assert code == 0 and _metrics(tmp_path / "best", "train")[-1]["bad_records"] == 0


def test_a_student_of_another_input_format_than_the_data_is_an_error(tmp_path, capsys, lc0_data):
    code, _, err = _train(capsys, [lc0_data / "v6-fmt1-maia1900"], tmp_path / "r", 5, "net.input_format=3")
    assert code == 2
    _assert_one_line_error(err, "reads input format 3", "format 1 (")
    net = SHARED / "nets" / "maia-1100-fmt3.pb.gz"
    assert main(["evaluate", str(net), "--data", str(lc0_data / "v6-fmt1-maia1900"), "--positions", "64"]) == 2
    _assert_one_line_error(capsys.readouterr().err, str(net), "reads input format 3", "format 1 (")


def test_a_format_mixed_in_later_is_caught_by_the_batch_check(tmp_path, capsys, lc0_data, monkeypatch):
    """The start probe samples chunks; a chunk of another format among many is caught when its batch comes
    (the probe is made to see nothing here, as it would miss one odd chunk among thousands)."""
    folder = tmp_path / "data"
    shutil.copytree(lc0_data / "v6-fmt1-maia1900", folder)
    odd = sorted((lc0_data / "v6-fmt3-maia1100").glob("*.gz"))[0]
    shutil.copy(odd, folder / "game_000003.gz")  # replaces a format-1 game: between the probed ones
    from lc0distill.checks import check_batch_formats
    from lc0distill.errors import Lc0DistillError

    formats, chunks = np.array([1, 1, 3]), np.array([0, 1, 2])
    with pytest.raises(Lc0DistillError, match="chunk-2: input format 3, but the student reads input format 1"):
        check_batch_formats(1, formats, chunks, lambda i: f"chunk-{i}", "the student")
    from lc0distill.chunks.probe import DataProbe

    monkeypatch.setattr("lc0distill.train.probe_chunks", lambda sources: DataProbe())
    code, _, err = _train(capsys, [folder], tmp_path / "r", 70, "data.test_ratio=0")
    assert code == 2
    _assert_one_line_error(err, f"{folder / 'game_000003.gz'}: input format 3, but the student")


def test_resuming_with_another_net_or_optimizer_is_an_error(tmp_path, capsys, good_chunks):
    run_dir = tmp_path / "run"
    assert _train(capsys, [good_chunks], run_dir, 5)[0] == 0
    code, _, err = _train(capsys, [good_chunks], run_dir, 10, "net.size=16x1")
    assert code == 2
    _assert_one_line_error(err, str(run_dir / LATEST), "net.filters 8 in the checkpoint, 16 now", "--fresh")
    code, _, err = _train(capsys, [good_chunks], run_dir, 10, "train.optimizer=adamw")
    assert code == 2
    _assert_one_line_error(err, "train.optimizer 'sgd' in the checkpoint, 'adamw' now")
    assert main(["train", "--fresh", f"data.paths=[{good_chunks}]", *TINY, "train.steps=10", f"train.run_dir={run_dir}",
                 "train.optimizer=adamw"]) == 0


def test_data_that_is_all_bad_stops_the_run(tmp_path, capsys):
    folder = tmp_path / "bad"
    folder.mkdir()
    for i in range(4):
        (folder / f"game_{i:06d}.gz").write_bytes(b"\x1f\x8b\x08\x00" + bytes(60))
    code, _, err = _train(capsys, [folder], tmp_path / "r", 5, "data.test_ratio=0")
    assert code == 2
    _assert_one_line_error(err, "none of the 4 chunks can be read (12 reads in 3 passes", str(folder))


def test_a_data_set_partly_bad_trains_with_several_workers(tmp_path, capsys, lc0_data):
    """Each pass deals the chunks to the workers anew, so a worker may draw only bad ones for a while: only
    the whole stream (every worker's reads) decides that the data gives nothing."""
    folder = tmp_path / "half"
    shutil.copytree(lc0_data / "v4-maia1100", folder)
    for victim in sorted(folder.glob("*.gz"))[:2]:
        victim.write_bytes(b"\x1f\x8b\x08\x00" + bytes(60))
    code, _, err = _train(capsys, [folder], tmp_path / "r", 120, "data.workers=2", "data.test_ratio=0")
    assert code == 0, err


def test_more_workers_than_chunks_is_a_clear_error(tmp_path, capsys, lc0_data):
    code, _, err = _train(capsys, [lc0_data / "v4-maia1100"], tmp_path / "r", 5, "data.workers=8",
                          "data.test_ratio=0")
    assert code == 2
    _assert_one_line_error(err, "4 chunks cannot feed 8 loader shards", "data.workers")


def test_a_run_logs_its_schedules_and_draws_its_curves(tmp_path, capsys, good_chunks):
    teacher = tmp_path / "teacher.pt"
    torch.manual_seed(3)
    save_model(SEResNet(NetConfig(filters=8, blocks=1)).eval(), teacher)
    run_dir = tmp_path / "run"
    code, _, err = _train(capsys, [good_chunks], run_dir, 20, f"teacher.nets=[{teacher}]",
                          "loss.teacher_weight.kind=linear_decay", "loss.teacher_weight.weight=0.8",
                          "loss.teacher_weight.end_step=20", "loss.temperature.kind=linear",
                          "loss.temperature.start=2", "loss.temperature.end=1", "loss.temperature.steps=20")
    assert code == 0, err
    train = {r["step"]: r for r in _metrics(run_dir, "train")}
    assert train[5]["teacher_weight"] == pytest.approx(0.8 * 16 / 20)  # that of update 4, the fifth (step 5)
    assert train[10]["temperature"] == pytest.approx(2 - 9 / 20)
    png = (run_dir / "curves.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000


def test_files_follow_the_umask(tmp_path, capsys, good_chunks):
    import os

    old = os.umask(0o027)
    try:
        run_dir = tmp_path / "run"
        assert _train(capsys, [good_chunks], run_dir, 5)[0] == 0
    finally:
        os.umask(old)
    for name in (LATEST, "final.pt", "curves.png"):
        assert (run_dir / name).stat().st_mode & 0o777 == 0o640, name


@pytest.mark.parametrize("sync_every", [1, 50])
def test_a_skipped_step_leaves_the_net_as_it_was(tmp_path, good_chunks, sync_every):
    """A non-finite input (as an fp16 overflow would make): the step is skipped, and the batch-norm statistics
    that its train-mode forward updated are put back, so the next steps train a finite net. Read at once
    (sync_every=1) or at the next read of the flags: the same skip, the same net."""
    from lc0distill.config import load_config
    from lc0distill.train import Run

    config = load_config(None, [f"data.paths=[{good_chunks}]", *TINY, "train.steps=5", f"train.run_dir={tmp_path}",
                                f"train.sync_every={sync_every}"])
    run = Run(config, log=lambda line: None)
    run.open_logs()
    batches = run.batches()
    assert run.train_step(next(batches)) is not None
    before = {k: v.clone() for k, v in run.student.state_dict().items()}
    bad = next(batches)
    bad.planes[4, 0, 0, 0] = float("inf")
    if sync_every == 1:
        assert run.train_step(bad) is None
    else:  # the device went on; the host learns of the skip when it reads the flags
        assert run.train_step(bad) is not None and run.guard.skipped == 0 and run.step == 2
        assert run.sync() == 1 and run.sync() == 0
    assert run.guard.skipped == 1 and run.step == 1
    assert all(torch.equal(before[k], v) for k, v in run.student.state_dict().items())
    skipped = _metrics(tmp_path, "skipped")[0]
    assert skipped["step"] == 1 and skipped["batch"] == 2
    assert len(skipped["positions"]) == 1 and skipped["positions"][0].endswith(f"record {int(bad.record_index[4])}")
    assert run.train_step(next(batches)) is not None
    assert all(bool(torch.isfinite(v).all()) for v in run.student.state_dict().values() if v.is_floating_point())


def test_reading_the_flags_later_catches_and_names_the_same_bad_batches(tmp_path, capsys, good_chunks, monkeypatch):
    """Batches 3, 4 and 9 of the stream carry a non-finite value in one position (an input, a target, a
    target): read at every step (sync_every=1) or at the logging reads only (the default 50: the log every
    5 steps reads them), the same batches are skipped, named with the same position, at the same step; the
    runs both apply 12 updates from 15 batches."""
    import lc0distill.training.data as run_data

    make = run_data.make_batch
    corrupt = {3: ("planes", 2), 4: ("policy", 5), 9: ("z", 30)}
    seen = {"batches": 0}

    def corrupted(packed, *args, **kwargs):
        batch = make(packed, *args, **kwargs)
        seen["batches"] += 1
        if seen["batches"] in corrupt:
            field, row = corrupt[seen["batches"]]
            getattr(batch, field).view(len(batch), -1)[row, 0] = float("nan")
        return batch

    monkeypatch.setattr(run_data, "make_batch", corrupted)
    runs = {}
    for sync_every in (1, 50):
        seen["batches"] = 0
        run_dir = tmp_path / f"sync{sync_every}"
        code, _, err = _train(capsys, [good_chunks], run_dir, 12, f"train.sync_every={sync_every}",
                              "data.test_ratio=0", "train.checkpoint_every=100")
        assert code == 0, err
        runs[sync_every] = [{k: s[k] for k in ("step", "batch", "what", "positions")}
                            for s in _metrics(run_dir, "skipped")]
        assert load_checkpoint(run_dir / LATEST)["batches_consumed"] == 15
        assert _metrics(run_dir, "train")[-1]["skipped_steps"] == 3
    assert [s["batch"] for s in runs[1]] == [3, 4, 9] and [s["step"] for s in runs[1]] == [2, 2, 6]
    assert all(len(s["positions"]) == 1 and s["what"].startswith("loss (") for s in runs[1])
    assert runs[50] == runs[1]


def _linear_and_optimizer():
    from lc0distill.config import TrainConfig
    from lc0distill.training.setup import make_optimizer

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    return model, make_optimizer(TrainConfig(), model)


def test_a_skipped_first_step_leaves_the_momentum_as_a_fresh_start():
    """torch's fused SGD leaves its momentum buffers uninitialised when the first step is skipped on found_inf;
    make_optimizer's zero buffers make the next applied step exactly a fresh optimizer's first."""
    from lc0distill.guard import guarded_update

    x = torch.randn(8, 4)
    fresh, fresh_optimizer = _linear_and_optimizer()
    fresh(x).sum().backward()
    fresh_optimizer.step()
    model, optimizer = _linear_and_optimizer()
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    for applied in (False, True):
        optimizer.zero_grad()
        model(x).sum().backward()
        guarded_update(model, optimizer, scaler, torch.tensor(applied), 1, Path("."))
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), fresh.parameters()))


def test_under_a_loss_scaler_a_non_finite_loss_skips_the_step_even_with_finite_gradients():
    """fp16's path (a GradScaler decides the skip from the gradients): a NaN loss part weighed 0 leaves the
    gradients finite, so they are poisoned; the step is skipped, the scale halves, the next step applies."""
    from lc0distill.guard import gradients_finite, guarded_update, poison_gradients

    model, optimizer = _linear_and_optimizer()
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    before = [p.detach().clone() for p in model.parameters()]
    x = torch.randn(8, 4)
    for nan_part in (True, False):
        optimizer.zero_grad()
        loss = model(x).sum() + (0.0 * torch.tensor(float("nan")) if nan_part else 0.0)
        scaler.scale(loss).backward()
        assert all(bool(torch.isfinite(p.grad).all()) for p in model.parameters())
        finite = torch.isfinite(loss)
        poison_gradients(model, finite)
        applied = finite & gradients_finite(model, optimizer, scaler, 10.0)
        assert bool(guarded_update(model, optimizer, scaler, applied, 1, Path(".")))
        unchanged = all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
        assert unchanged == nan_part
    assert scaler.get_scale() == 512.0
