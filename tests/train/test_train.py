"""Training runs end to end: outputs, exact resume after SIGKILL, DDP under torchrun, distillation."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lc0distill.checkpoint import LATEST, load_checkpoint
from lc0distill.cli import main
from lc0distill.config import load_config
from lc0distill.lc0.weights import read_net
from lc0distill.models.store import load_model
from tests.conftest import SHARED

TINY = ["data.workers=0", "data.batch_size=48", "data.sample_rate=1", "data.shuffle_buffer=600", "net.size=16x2",
        "train.eval_positions=200"]


def _args(data, run_dir, steps, *extra):
    paths = ",".join(map(str, data)) if isinstance(data, (list, tuple)) else data
    return [f"data.paths=[{paths}]", *TINY, f"train.steps={steps}", f"train.run_dir={run_dir}", *extra]


def _records(run_dir: Path, kind: str) -> dict[int, dict]:
    """The last record of each step (a resumed run logs some steps twice)."""
    found = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["kind"] == kind:
            found[record["step"]] = record
    return found


def test_short_run_writes_everything(tmp_path, classical_data, capsys):
    run_dir = tmp_path / "run"
    argv = ["train", *_args(classical_data, run_dir, 30, "train.log_every=10", "train.eval_every=15",
                            "train.checkpoint_every=15")]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["steps"] == 30 and result["test"]["positions"] > 0
    for name in ("checkpoint.pt", "final.pt", "final.pb.gz", "config.yaml", "metrics.jsonl"):
        assert (run_dir / name).exists(), name
    train_records = _records(run_dir, "train")
    assert sorted(train_records) == [10, 20, 30]
    assert {"total", "policy", "value", "moves_left", "positions_per_second", "lr"} <= set(train_records[30])
    assert sorted(_records(run_dir, "test")) == [15, 30]
    # The final lc0 net is the final .pt net, up to LINEAR16 quantisation.
    planes = torch.rand(4, 112, 8, 8).round()
    with torch.no_grad():
        a, b = load_model(run_dir / "final.pt")(planes), read_net(run_dir / "final.pb.gz")(planes)
    assert (a.wdl_logits - b.wdl_logits).abs().max() < 1e-2
    # The saved config reloads to the same RunConfig.
    assert load_config(run_dir / "config.yaml") == load_config(None, _args(classical_data, run_dir, 30, "train.log_every=10",
                                                                      "train.eval_every=15", "train.checkpoint_every=15"))
    # Started again, the finished run trains nothing and says the held-out metrics of its end, not {}.
    lines = len((run_dir / "metrics.jsonl").read_text().splitlines())
    assert main(argv) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["steps"] == 30 and again["test"] == {k: v for k, v in _records(run_dir, "test")[30].items()
                                                       if k not in ("kind", "step")}
    assert again["test"]["positions"] > 0
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == lines  # no evaluation made again


def _train_process(args):
    return subprocess.Popen([sys.executable, "-m", "lc0distill", "train", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def test_sigkill_then_resume_continues_exactly(tmp_path, classical_data):
    steps, every = 60, 20
    common = ("train.log_every=1", "train.eval_every=0", f"train.checkpoint_every={every}", "net.size=16x2")
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    assert _train_process(_args(classical_data, reference, steps, *common)).wait(timeout=300) == 0
    process = _train_process(_args(classical_data, killed, steps, *common))
    deadline = time.time() + 300
    while not (killed / LATEST).exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    at_kill = load_checkpoint(killed / LATEST)  # complete and readable: never a partial file
    assert at_kill["step"] == every and at_kill["step"] < steps
    assert _train_process(_args(classical_data, killed, steps, *common)).wait(timeout=300) == 0
    assert not list(killed.glob("*.tmp")) and not list(killed.glob(".*.tmp"))
    expected, resumed = _records(reference, "train"), _records(killed, "train")
    assert sorted(resumed) == sorted(expected) == list(range(1, steps + 1))
    for step in range(every + 1, steps + 1):
        for part in ("total", "policy", "value", "moves_left"):
            assert resumed[step][part] == pytest.approx(expected[step][part], rel=1e-5, abs=1e-6), (step, part)
    final_a, final_b = load_model(reference / "final.pt"), load_model(killed / "final.pt")
    for (name, p), q in zip(final_a.state_dict().items(), final_b.state_dict().values()):
        assert torch.allclose(p, q, atol=1e-5), name
    assert _records(killed, "data")[steps]["digest"] == _records(reference, "data")[steps]["digest"]


@pytest.mark.slow
def test_torchrun_two_cpu_ranks_end_with_identical_weights(tmp_path, classical_data):
    run_dir = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "lc0distill", "train",
               *_args(classical_data, run_dir, 12, "train.log_every=6", "train.eval_every=0", "train.checkpoint_every=6")]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    said = [line for line in finished.stderr.splitlines() if "torch/distributed/" not in line]  # the ranks' own
    assert finished.returncode == 0, "\n".join(said)[-3000:]
    ddp = _records(run_dir, "ddp")[12]
    assert ddp["ranks"] == 2 and ddp["weights_identical"] is True
    assert ddp["rank_batch_size"] == 24  # data.batch_size=48 is the global batch: 24 positions a rank
    assert ddp["fingerprints"][0] == ddp["fingerprints"][1]


def test_batch_norm_statistics_move_at_momentum_001_by_default(tmp_path, classical_data):
    """Keras' momentum 0.99 (lczero-training) is PyTorch's 0.01: after one step the running mean of a batch-norm
    layer is 0.99 * its start (0) + 0.01 * the mean of the batch it saw, computed here from the layer's input."""
    from lc0distill.train import open_run

    config = load_config(None, _args(classical_data, tmp_path / "bn", 1, "train.lr.lr=0"))
    run = open_run(config, log=lambda line: None)
    layer = next(m for m in run.student.modules() if isinstance(m, torch.nn.BatchNorm2d))
    seen = []
    hook = layer.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].detach().double()))
    try:
        run.train_step(next(run.batches()))
    finally:
        hook.remove()
        run.close_logs()
    batch_mean = seen[0].mean(dim=(0, 2, 3))
    assert torch.allclose(layer.running_mean.double(), 0.01 * batch_mean, atol=1e-6)


def test_the_data_digest_tells_the_same_positions_from_others(tmp_path, classical_data):
    """Two runs that read the same positions in the same order (a teacher changes only the targets) share the
    digest; another seed reads another order. Checked against the positions each batch named."""
    from lc0distill.train import NO_DATA_DIGEST, chain_digest, open_run

    digests = {}
    for name, extra in (("alone", []), ("taught", [f"teacher.nets=[{SHARED / 'nets' / 'maia-1900.pb.gz'}]"]),
                        ("seed", ["data.seed=5"])):
        run_dir = tmp_path / name
        assert main(["train", *_args(classical_data, run_dir, 3, "train.eval_every=0", "export.lc0=false",
                                     *extra)]) == 0
        digests[name] = _records(run_dir, "data")[3]["digest"]
    assert digests["alone"] == digests["taught"] != digests["seed"]
    run = open_run(load_config(None, _args(classical_data, tmp_path / "again", 3)), log=lambda line: None)
    expected = NO_DATA_DIGEST
    try:
        for _, batch in zip(range(3), run.batches()):
            packed = {"chunk": batch.chunk_index.numpy(), "record": batch.record_index.numpy()}
            expected = chain_digest(expected, packed)
    finally:
        run.close_logs()
    assert expected == digests["alone"]


def test_keep_best_keeps_the_net_of_the_lowest_held_out_policy_loss(tmp_path, classical_data):
    run_dir = tmp_path / "best"
    assert main(["train", *_args(classical_data, run_dir, 12, "train.keep_best=true", "train.eval_every=3",
                                 "train.lr.lr=0.2", "train.log_every=3", "export.lc0=false")]) == 0
    tests = _records(run_dir, "test")
    best_step = min(sorted(tests), key=lambda step: tests[step]["policy_loss"])
    kept = json.loads((run_dir / "best.json").read_text())
    assert sorted(tests) == [3, 6, 9, 12] and kept["step"] == best_step
    assert kept["metrics"]["policy_loss"] == tests[best_step]["policy_loss"]
    from lc0distill.chunks.config import make_loader
    from lc0distill.evaluate import evaluate_net
    from lc0distill.shards.select import select_sources

    config = load_config(run_dir / "config.yaml")
    _, test_sources = select_sources(config.data)
    again = evaluate_net(load_model(run_dir / "best.pt"), make_loader(config.data, test_sources, passes=1, sample_rate=1,
                                                                      seed_offset=1), 200)
    assert again["policy_loss"] == pytest.approx(tests[best_step]["policy_loss"], rel=1e-5)


def test_swa_before_its_first_average_exports_the_live_student(tmp_path, classical_data):
    """Fewer steps than train.swa_every: the final net is the trained student, not SWA's untouched copy of the
    initial weights."""
    run_dir = tmp_path / "swa"
    assert main(["train", *_args(classical_data, run_dir, 4, "train.swa_every=10", "train.log_every=2",
                                 "train.eval_every=0", "export.lc0=false")]) == 0
    final = load_model(run_dir / "final.pt").state_dict()
    live = load_checkpoint(run_dir / LATEST)["model"]
    torch.manual_seed(0)  # train.seed: the weights the run started from
    from lc0distill.models.net import SEResNet

    start = SEResNet(load_config(run_dir / "config.yaml").net).state_dict()
    name = "input.conv.weight"
    assert torch.equal(final[name], live[name]) and not torch.equal(final[name], start[name])


def test_distillation_from_a_real_lc0_teacher(tmp_path, selfplay_dir):
    teacher = SHARED / "nets" / "maia-1900.pb.gz"
    run_dir = tmp_path / "distil"
    argv = ["train", f"data.paths=[{selfplay_dir}]", *TINY, "train.steps=12", f"train.run_dir={run_dir}",
            "train.log_every=6", "train.eval_every=12", "train.checkpoint_every=12", "net.size=16x2",
            f"teacher.nets=[{teacher}]", "loss.teacher_weight.weight=0.7", "loss.temperature.start=2.0"]
    assert main(argv) == 0
    record = _records(run_dir, "train")[12]
    assert {"policy_distill", "value_distill"} <= set(record)
    assert record["total"] == pytest.approx(
        0.3 * record["policy"] + 0.7 * record["policy_distill"] + 0.3 * record["value"]
        + 0.7 * record["value_distill"] + record["moves_left"], rel=1e-5)
    assert _records(run_dir, "test")[12]["teacher_agreement"] is not None


def test_mismatched_teacher_is_a_clear_error(tmp_path, classical_data, capsys):
    teacher = SHARED / "nets" / "maia-1100-fmt3.pb.gz"
    argv = ["train", *_args(classical_data, tmp_path / "r", 5), f"teacher.nets=[{teacher}]"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "input format 3" in err and err.count("\n") == 1


def test_config_errors_name_the_key(tmp_path, capsys):
    assert main(["train", "data.paths=[x]", "train.stepz=5"]) == 2
    assert "train.stepz" in capsys.readouterr().err
    recipe = tmp_path / "r.yaml"
    recipe.write_text("data: {paths: [x]}\nloss: {q_ratio: 2}\n")
    assert main(["train", "--config", str(recipe)]) == 2
    assert "loss.q_ratio" in capsys.readouterr().err


def test_evaluate_nets_side_by_side(capsys, lc0_data):
    maia = SHARED / "nets" / "maia-1900.pb.gz"
    folder = lc0_data / "v6-fmt1-maia1900"
    assert main(["evaluate", str(maia), str(maia), "--data", str(folder), "--positions", "400", "--json"]) == 0
    nets = json.loads(capsys.readouterr().out)["nets"]
    metrics = nets[str(maia)]
    assert metrics["positions"] >= 400 and 0 < metrics["policy_loss"] < 3 and metrics["top1_accuracy"] > 0.3
    assert metrics["value_mse"] is not None and metrics["moves_left_mae"] is None


def test_train_threads_sets_the_thread_pool(tmp_path, classical_data):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert main(["train", *_args(classical_data, tmp_path / "run", 2, "train.threads=1", "export.lc0=false")]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_resume_with_a_new_stream_then_replay_within_it(tmp_path, classical_data, capsys):
    """resume_data=reseed starts a new data stream at the batch reached (no re-reading); a later resume replays
    that stream exactly."""
    common = ("train.log_every=1", "train.eval_every=0", "train.checkpoint_every=2", "export.lc0=false")

    def run(run_dir, steps, *extra):
        assert main(["train", *_args(classical_data, run_dir, steps, *common, *extra)]) == 0
        return capsys.readouterr().out

    straight, reseeded, twice = tmp_path / "straight", tmp_path / "reseeded", tmp_path / "twice"
    run(straight, 8)
    run(reseeded, 4)
    assert "a new stream from batch 4" in run(reseeded, 8, "train.resume_data=reseed")
    run(twice, 4)
    run(twice, 6, "train.resume_data=reseed")
    assert "a new stream" not in run(twice, 8, "train.resume_data=replay")
    a, b, c = _records(straight, "train"), _records(reseeded, "train"), _records(twice, "train")
    assert [a[s]["total"] for s in range(1, 5)] == pytest.approx([b[s]["total"] for s in range(1, 5)], rel=1e-6)
    assert b[5]["policy"] != pytest.approx(a[5]["policy"], rel=1e-4)  # other positions after the reseed
    for step in range(5, 9):  # the same new stream, replayed from its start to batch 6
        assert c[step]["total"] == pytest.approx(b[step]["total"], rel=1e-5), step
    assert load_checkpoint(twice / LATEST)["data_stream"] == {"start": 4, "seed_offset": 6}
