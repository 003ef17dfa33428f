"""What only a GPU can show: mixed precision against float32, compiled and channels-last nets against eager ones,
the packed bytes expanded on the device bit for bit as on the CPU, a resumed run bit-exact, no step that waits for
the host, and DDP over NCCL under torchrun.

`pytest -m cuda` runs them where CUDA is present (tools/device_check.sh does); elsewhere they skip, saying so.
LC0DISTILL_TEST_DEVICE=cpu runs the same checks on the CPU (autocast in bf16/fp16 on the CPU, gloo for DDP): a
way to check the tests themselves without a GPU, not a substitute for one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before cuBLAS starts: train.deterministic needs it

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from lc0distill.chess.expand import Rule50Scale  # noqa: E402
from lc0distill.chunks.batch import HOST_FIELDS, make_batch  # noqa: E402
from lc0distill.chunks.packed import pack_records  # noqa: E402
from lc0distill.chunks.reader import read_chunk  # noqa: E402
from lc0distill.chunks.sources import find_chunks  # noqa: E402
from lc0distill.config import LossConfig, load_config  # noqa: E402
from lc0distill.distill.objective import loss_parts  # noqa: E402
from lc0distill.models.config import preset  # noqa: E402
from lc0distill.models.net import SEResNet  # noqa: E402
from lc0distill.models.store import load_model  # noqa: E402
from lc0distill.training.setup import set_batch_norm_momentum  # noqa: E402

DEVICE = torch.device(os.environ.get("LC0DISTILL_TEST_DEVICE", "cuda"))
pytestmark = [pytest.mark.cuda, pytest.mark.skipif(DEVICE.type == "cuda" and not torch.cuda.is_available(),
                                                    reason="no CUDA device (tools/device_check.sh runs these on one)")]
TINY = ["data.workers=0", "data.batch_size=64", "data.sample_rate=1", "data.shuffle_buffer=512", "net.size=16x2",
        "train.eval_positions=128", "export.lc0=false", "train.log_every=4", "train.eval_every=0",
        f"train.device={DEVICE}"]


@pytest.fixture()
def exact_float32():
    """float32 as float32 (no TF32 in convolutions or matmuls) for the comparisons that need it."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.fixture(scope="module")
def packed(lc0_data) -> np.ndarray:
    """Positions of every input format lc0-data holds, with a V3-style all-legal row and a NaN target."""
    records = np.concatenate([read_chunk(source).records for source in find_chunks([str(lc0_data)])])
    records = records[np.random.default_rng(0).permutation(len(records))[:1024]].copy()
    records["probabilities"][0][records["probabilities"][0] < 0] = 0.0
    records["best_q"][1] = np.nan
    return pack_records(records)


def _bits(tensor: torch.Tensor) -> torch.Tensor:
    tensor = tensor.detach().cpu().contiguous().reshape(-1)
    return tensor if tensor.dtype == torch.bool else tensor.view(torch.uint8)


@pytest.mark.parametrize("rule50", list(Rule50Scale))
def test_packed_bytes_expand_on_the_device_as_on_the_cpu_bit_for_bit(packed, rule50):
    on_device = make_batch(packed, DEVICE, rule50=rule50, expand_on_device=True)
    on_host = make_batch(packed, "cpu", rule50=rule50, expand_on_device=False)
    for field in fields(on_host):
        a, b = getattr(on_device, field.name), getattr(on_host, field.name)
        expected_device = "cpu" if field.name in HOST_FIELDS else DEVICE.type
        assert a.device.type == expected_device, field.name
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(_bits(a), _bits(b)), field.name


def _loss_and_gradients(net: SEResNet, batch, dtype: torch.dtype | None):
    """The loss parts and the gradients of one training step's loss, under autocast to `dtype` (None: off);
    the loss is scaled by 1024 for the backward pass (as fp16's scaler would), the gradients unscaled."""
    net.zero_grad(set_to_none=True)
    with torch.autocast(DEVICE.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        report = loss_parts(net(batch.planes), batch, None, LossConfig(), 0.0, 1.0)
    (report.total * 1024).backward()
    grads = torch.cat([p.grad.float().flatten() / 1024 for p in net.parameters() if p.grad is not None])
    return {name: float(part) for name, part in report.parts.items()}, grads


@pytest.mark.parametrize("dtype, loss_tolerance, cosine", [(torch.bfloat16, 0.02, 0.99), (torch.float16, 0.005, 0.999)])
def test_mixed_precision_steps_match_float32(packed, exact_float32, dtype, loss_tolerance, cosine):
    """bf16 / fp16 autocast against float32 on the same batch and weights: each loss part within
    `loss_tolerance` (relative), the gradient's direction within `cosine` and its norm within 5%."""
    batch = make_batch(packed[np.isfinite(packed["best_q"])][:512], DEVICE)
    torch.manual_seed(0)
    net = SEResNet(preset("64x6")).to(DEVICE).train()
    set_batch_norm_momentum(net, 0.0)  # the two forwards see the same running statistics
    reference, reference_grads = _loss_and_gradients(net, batch, None)
    mixed, grads = _loss_and_gradients(net, batch, dtype)
    for name, value in reference.items():
        assert abs(mixed[name] - value) <= loss_tolerance * max(1.0, abs(value)), (name, mixed[name], value)
    assert torch.nn.functional.cosine_similarity(grads, reference_grads, dim=0) >= cosine
    assert abs(grads.norm() / reference_grads.norm() - 1) < 0.05


def test_compiled_and_channels_last_nets_give_the_eager_outputs(packed, exact_float32):
    batch = make_batch(packed[:256], DEVICE)
    torch.manual_seed(0)
    net = SEResNet(preset("64x6")).to(DEVICE).eval()
    with torch.no_grad():
        eager = net(batch.planes)
        compiled = torch.compile(net)(batch.planes)
        last = net.to(memory_format=torch.channels_last)
        channels_last = last(batch.planes.contiguous(memory_format=torch.channels_last))
    for other in (compiled, channels_last):
        for name in ("policy_logits", "wdl_logits", "moves_left"):
            a, b = getattr(other, name), getattr(eager, name)
            assert torch.allclose(a, b, atol=1e-4, rtol=1e-4), (name, (a - b).abs().max())


def test_a_compiled_channels_last_run_trains_as_an_eager_one(tmp_path, classical_data, exact_float32):
    """The real step (Run: guard, fused SGD, teacher none) with train.compile and train.channels_last: the same
    losses, step for step, as the eager run on the same batches."""
    from lc0distill.train import Run

    losses = {}
    for name, extra in (("eager", []), ("compiled", ["train.compile=true", "train.channels_last=true"])):
        config = load_config(None, [f"data.paths=[{','.join(map(str, classical_data))}]", *TINY, "train.steps=6",
                                    f"train.run_dir={tmp_path / name}", *extra])
        run = Run(config, log=lambda line: None)
        run.open_logs()
        batches = run.batches()
        losses[name] = [float(run.train_step(next(batches)).total.detach()) for _ in range(6)]
        run.close_logs()
    assert np.allclose(losses["compiled"], losses["eager"], rtol=1e-3, atol=1e-4), losses


def test_steady_steps_never_synchronise_with_the_device(tmp_path, classical_data):
    """torch's own sync detector (CUDA only) raises on any synchronising call inside the steady steps."""
    if DEVICE.type != "cuda":
        pytest.skip("torch.cuda.set_sync_debug_mode needs CUDA")
    from lc0distill.train import Run

    config = load_config(None, [f"data.paths=[{','.join(map(str, classical_data))}]", *TINY, "train.steps=10",
                                f"train.run_dir={tmp_path}"])
    run = Run(config, log=lambda line: None)
    run.open_logs()
    stream = run.batches()
    batches = [next(stream) for _ in range(5)]  # made before: the loader's copies are not the step's
    run.train_step(batches[0])
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for batch in batches[1:]:
            run.train_step(batch)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert run.sync() == 0 and run.step == 5
    run.close_logs()


def test_a_resumed_run_is_bit_exact(tmp_path, classical_data):
    """train.deterministic: 8 steps unbroken, and 4 steps, a checkpoint, then a new process-like start from it
    to 8: the same weights, bit for bit."""
    from lc0distill.train import Throughput, open_run, train, train_until

    common = [f"data.paths=[{','.join(map(str, classical_data))}]", *TINY, "train.steps=8",
              "train.checkpoint_every=4", "train.deterministic=true"]
    try:
        train(load_config(None, [*common, f"train.run_dir={tmp_path / 'unbroken'}"]), log=lambda line: None)
        config = load_config(None, [*common, f"train.run_dir={tmp_path / 'resumed'}"])
        run = open_run(config, log=lambda line: None)
        train_until(run, run.batches(), 4, Throughput.now())
        run.save()
        run.close_logs()
        del run
        train(config, log=lambda line: None)
    finally:
        torch.use_deterministic_algorithms(False)
    unbroken, resumed = load_model(tmp_path / "unbroken" / "final.pt"), load_model(tmp_path / "resumed" / "final.pt")
    for (name, a), b in zip(unbroken.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(_bits(a), _bits(b)), name


def test_ddp_through_torchrun_on_one_gpu(tmp_path, classical_data):
    """torchrun with one rank: the student in DDP, gradients all-reduced over NCCL (gloo on the CPU), the run's
    end checks the ranks agree and records the backend."""
    run_dir = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", "-m",
               "lc0distill", "train", f"data.paths=[{','.join(map(str, classical_data))}]", *TINY, "train.steps=6",
               f"train.run_dir={run_dir}"]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    ddp = [r for r in records if r["kind"] == "ddp"][-1]
    assert ddp["ranks"] == 1 and ddp["weights_identical"] is True
    assert ddp["backend"] == ("nccl" if DEVICE.type == "cuda" else "gloo")
    assert Path(run_dir / "final.pt").exists()
