"""Training-loop overhead: gentest.training.train against a minimal hand-written PyTorch loop
doing the same SGD steps on the same data (the baseline, in the same run).

    python -m pytest tests/benchmarks --benchmark-enable --benchmark-group-by=group

pytest-benchmark prints both rows of the group with their ratio; in ordinary test runs
(benchmarks disabled) each body runs once, as a smoke test.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gentest.datasets import load_dataset
from gentest.models import build_model
from gentest.spec import RunSpec, TrainSettings, freeze
from gentest.training import evaluate, train

EPOCHS = 3
SPEC = RunSpec(
    dataset="mnist1d",
    model="mlp",
    model_args=freeze({"hidden": [512, 512, 512]}),
    train=TrainSettings(lr=0.05, batch_size=128, max_epochs=EPOCHS, stop_train_acc=1.0),
)


@pytest.fixture(scope="module")
def data():
    return load_dataset("mnist1d")


def baseline_loop(data, evaluate_each_epoch: bool = False) -> float:
    """The same steps with nothing else: no per-epoch evaluation, no curve, no bookkeeping.

    With ``evaluate_each_epoch``, also the eval-mode passes over the training and the test set
    that gentest makes before the first epoch and after each (the exact stopping rule, Fig 1a's
    curves, Table 1's best test accuracy): what is left between this and gentest is gentest's
    own overhead."""
    gen = torch.Generator().manual_seed(0)
    model = build_model("mlp", data.input_shape, 10, generator=gen, hidden=[512, 512, 512])
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for epoch in range(EPOCHS + 1):
        if evaluate_each_epoch:  # before the first epoch, and after each, as gentest does
            evaluate(model, data.x_train, data.y_train)
            evaluate(model, data.x_test, data.y_test)
        if epoch == EPOCHS:
            break
        order = torch.randperm(len(data.x_train), generator=gen)
        for i in range(0, len(order), 128):
            idx = order[i : i + 128]
            loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return loss.item()


@pytest.mark.benchmark(group="train-3-epochs-mnist1d-mlp3x512")
def test_baseline_plain_pytorch_loop(benchmark, data):
    assert benchmark.pedantic(baseline_loop, args=(data,), rounds=3, iterations=1) > 0


@pytest.mark.benchmark(group="train-3-epochs-mnist1d-mlp3x512")
def test_plain_loop_with_the_same_epoch_evaluation(benchmark, data):
    assert benchmark.pedantic(baseline_loop, args=(data, True), rounds=3, iterations=1) > 0


@pytest.mark.benchmark(group="train-3-epochs-mnist1d-mlp3x512")
def test_gentest_train(benchmark, data):
    result = benchmark.pedantic(train, args=(SPEC, data, torch.device("cpu")), rounds=3, iterations=1)
    assert result.metrics["epochs"] == EPOCHS


def sgemm_peak_flops() -> float:
    """This machine's float32 matmul rate with torch's current thread count (the roofline)."""
    import time

    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    for _ in range(3):
        a @ b
    n, start = 20, time.perf_counter()
    for _ in range(n):
        a @ b
    return n * 2 * 1024**3 / (time.perf_counter() - start)


def mlp_train_flops_per_sample(widths: list[int]) -> float:
    """Forward 2·Σ fan_in·fan_out multiply-adds per sample; backward about twice that."""
    return 3 * 2 * sum(a * b for a, b in zip(widths[:-1], widths[1:]))


@pytest.mark.benchmark(group="train-throughput-mnist1d-mlp3x512")
def test_gentest_train_throughput(benchmark, data):
    """Samples/s and achieved FLOP/s of gentest's training, against sgemm measured now."""
    result = benchmark.pedantic(train, args=(SPEC, data, torch.device("cpu")), rounds=3, iterations=1)
    samples = EPOCHS * len(data.x_train)
    seconds = result.metrics["wall_s"]
    flops = samples * mlp_train_flops_per_sample([40, 512, 512, 512, 10])
    peak = sgemm_peak_flops()
    benchmark.extra_info.update(
        samples_per_s=samples / seconds, achieved_gflops=flops / seconds / 1e9, sgemm_peak_gflops=peak / 1e9,
        fraction_of_peak=flops / seconds / peak, threads=torch.get_num_threads(),
    )
    assert seconds > 0 and result.metrics["epochs"] == EPOCHS


def test_the_flop_count_behind_the_rate_is_torchs_own():
    """The FLOPs the throughput divides by, against torch's FlopCounterMode on one training step
    of the same MLP: the formula rounds the backward pass to twice the forward (the first layer
    needs no input gradient), so it may overcount by a little, never undercount."""
    from torch.utils.flop_counter import FlopCounterMode

    widths = [40, 512, 512, 512, 10]
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1])
    batch = 64
    x, y = torch.randn(batch, widths[0]), torch.randint(0, widths[-1], (batch,))
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.cross_entropy(model(x), y).backward()
    counted = counter.get_total_flops() / batch
    formula = mlp_train_flops_per_sample(widths)
    assert counted <= formula <= 1.02 * counted, (counted, formula)
