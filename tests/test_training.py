"""Training fits to the shared stopping rule, records its curve, and is reproducible on the CPU."""

from __future__ import annotations

import pytest
import torch

from gentest.datasets import load_dataset
from gentest.errors import GentestError
from gentest.randomizations import randomize
from gentest.spec import RunSpec, TrainSettings, freeze
from gentest.training import augment_batch, train

CPU = torch.device("cpu")


def tiny_spec(randomization="none", p=0.0, seed=0, **train_settings) -> RunSpec:
    settings = {"lr": 0.1, "batch_size": 32, "max_epochs": 80, **train_settings}
    return RunSpec(
        dataset="synthetic",
        dataset_args=freeze({"features": 8, "classes": 3, "train_size": 120, "test_size": 60}),
        model="mlp",
        model_args=freeze({"hidden": [32]}),
        randomization=randomization,
        p=p,
        seed=seed,
        train=TrainSettings(**settings),
    )


def data_for(spec: RunSpec):
    base = load_dataset("synthetic", {"features": 8, "classes": 3, "train_size": 120, "test_size": 60})
    return randomize(base, spec.randomization, spec.p, spec.seed_for("randomization")).data


def test_natural_and_random_labels_both_fit_to_100_percent():
    for spec in (tiny_spec(), tiny_spec("labels", 1.0)):
        result = train(spec, data_for(spec), CPU)
        m = result.metrics
        assert m["fitted"] and m["train_acc"] == 1.0
        assert m["steps_to_fit"] == m["steps"] == result.curve[-1]["steps"]
        assert m["gap"] == pytest.approx(m["train_acc"] - m["test_acc"])
    # The randomized twin generalizes worse: that is the whole point of the harness.
    natural = train(tiny_spec(), data_for(tiny_spec()), CPU).metrics
    rand = train(tiny_spec("labels", 1.0), data_for(tiny_spec("labels", 1.0)), CPU).metrics
    assert natural["test_acc"] > rand["test_acc"] + 0.3


def test_curve_has_one_row_per_epoch_from_epoch_zero():
    spec = tiny_spec()
    result = train(spec, data_for(spec), CPU)
    epochs = [row["epoch"] for row in result.curve]
    assert epochs == list(range(len(epochs))) and result.curve[0]["steps"] == 0
    steps_per_epoch = -(-120 // 32)
    assert all(row["steps"] == row["epoch"] * steps_per_epoch for row in result.curve)


def test_epoch_cap_stops_an_unfit_run_and_says_so():
    spec = tiny_spec("labels", 1.0, max_epochs=2, lr=0.001)
    m = train(spec, data_for(spec), CPU).metrics
    assert m["epochs"] == 2 and not m["fitted"] and m["steps_to_fit"] is None


def test_loss_threshold_is_an_alternative_stopping_rule():
    spec = tiny_spec(stop_train_acc=1.0, stop_train_loss=0.5)
    result = train(spec, data_for(spec), CPU)
    assert result.metrics["fitted"]
    assert result.curve[-1]["train_loss"] < 0.5 or result.curve[-1]["train_acc"] == 1.0
    assert all(row["train_loss"] >= 0.5 and row["train_acc"] < 1.0 for row in result.curve[:-1])


def test_without_the_accuracy_rule_training_goes_on_to_the_loss_threshold():
    """stop_train_acc = None (a suite's `stop_train_acc = false`): 100 % train accuracy does not
    stop the run; only train cross-entropy below the threshold does (Jiang et al.'s rule)."""
    spec = tiny_spec(stop_train_acc=None, stop_train_loss=0.01, max_epochs=400)
    result = train(spec, data_for(spec), CPU)
    assert result.metrics["fitted"] and result.curve[-1]["train_loss"] < 0.01
    assert all(row["train_loss"] >= 0.01 for row in result.curve[:-1])
    # it went on past the epoch where the accuracy rule would have stopped it
    first_full = next(row["epoch"] for row in result.curve if row["train_acc"] == 1.0)
    assert result.curve[-1]["epoch"] > first_full
    assert result.metrics["steps_to_fit"] == result.curve[-1]["steps"]


def test_exponential_schedule_decays_per_epoch():
    spec = tiny_spec("labels", 1.0, lr_schedule="exponential", lr_decay=0.9, max_epochs=3, lr=0.01)
    curve = train(spec, data_for(spec), CPU).curve
    assert [row["lr"] for row in curve[1:]] == pytest.approx([0.01 * 0.9**e for e in (1, 2, 3)])


def test_same_spec_same_numbers_on_the_cpu():
    spec = tiny_spec("labels", 0.5, dropout=0.2)
    a, b = train(spec, data_for(spec), CPU), train(spec, data_for(spec), CPU)
    assert a.curve == b.curve
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k])


def test_twins_share_initial_weights_and_training_leaves_global_rng_alone():
    before = torch.get_rng_state()
    natural = train(tiny_spec(), data_for(tiny_spec()), CPU)
    twin = train(tiny_spec("labels", 1.0), data_for(tiny_spec("labels", 1.0)), CPU)
    assert torch.equal(before, torch.get_rng_state())
    for k, v in natural.initial_state.items():
        assert torch.equal(v, twin.initial_state[k])
    other_seed = train(tiny_spec(seed=1, max_epochs=1), data_for(tiny_spec(seed=1)), CPU)
    assert not torch.equal(natural.initial_state["1.weight"], other_seed.initial_state["1.weight"])


def test_augment_crops_and_flips_each_image_independently():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).reshape(2, 1, 6, 6) + 1
    gen = torch.Generator().manual_seed(0)
    out = augment_batch(x.repeat(50, 1, 1, 1), gen, pad=2)
    assert out.shape == (100, 1, 6, 6)
    # Each output is a shifted (zero-filled) and maybe mirrored window of its source image.
    src = x.repeat(50, 1, 1, 1)
    for i in range(0, 100, 7):
        padded = torch.nn.functional.pad(src[i], (2, 2, 2, 2))
        windows = [padded[:, r : r + 6, c : c + 6] for r in range(5) for c in range(5)]
        windows += [w.flip(-1) for w in windows]
        assert any(torch.equal(out[i], w) for w in windows)
    assert len({tuple(o.flatten().tolist()) for o in out}) > 10


def test_sequence_augment_shifts_each_sequence_by_at_most_pad_with_zero_fill():
    from gentest.training import augment_sequence_batch

    x = torch.arange(1, 41, dtype=torch.float32).repeat(200, 1)  # (200, 40), as MNIST-1D
    out = augment_sequence_batch(x, torch.Generator().manual_seed(0), pad=4)
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x[0], (4, 4))
    windows = [padded[s : s + 40] for s in range(9)]  # brute force: every allowed shift
    shifts = [next(s for s, w in enumerate(windows) if torch.equal(o, w)) for o in out]
    assert set(shifts) == set(range(9))  # each shift occurs, nothing else does
    chans = augment_sequence_batch(x[:, None, :], torch.Generator().manual_seed(0), pad=4)
    assert torch.equal(chans[:, 0, :], out)  # (b, C, L) gives the same windows


def test_augment_trains_on_sequences_and_is_seeded():
    spec = tiny_spec(augment=True, max_epochs=2)
    a, b = train(spec, data_for(spec), CPU), train(spec, data_for(spec), CPU)
    plain = train(tiny_spec(max_epochs=2), data_for(spec), CPU)
    assert all(torch.equal(v, b.model.state_dict()[k]) for k, v in a.model.state_dict().items())
    assert not torch.equal(a.model.state_dict()["1.weight"], plain.model.state_dict()["1.weight"])


@pytest.mark.parametrize("stop_acc", [None, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("stop_loss", [None, 0.5])
def test_the_stopping_check_decides_as_the_full_evaluation(stop_acc, stop_loss):
    """stopping_rule_met (a retrain's per-epoch check, exiting early on accuracy) gives the rule
    that the full evaluation's accuracy and loss give, on a model that is right on some examples."""
    from gentest.training import FIT_CHUNK, evaluate, stopping_rule_met

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3 * FIT_CHUNK + 17, 6, generator=gen)
    model = torch.nn.Linear(6, 3)
    for y in (model(x).argmax(1), torch.randint(0, 3, (len(x),), generator=gen)):  # all right, ~1/3 right
        for flips in (0, 1, len(x) // 20):
            labels = y.clone()
            if flips:  # the last examples wrong: the check must see every chunk
                labels[-flips:] = (labels[-flips:] + 1) % 3
            acc, loss = evaluate(model, x, labels)
            expected = (stop_loss is not None and loss < stop_loss) or (stop_acc is not None and acc >= stop_acc)
            assert stopping_rule_met(model, x, labels, stop_acc, stop_loss) == expected


def _batches_seen(spec: RunSpec, monkeypatch) -> list[list[int]]:
    """The training examples of every SGD step, in order, as the model saw them: each input
    carries its example's index in feature 0, read back by a forward hook in train mode."""
    import dataclasses

    import gentest.training as training

    seen: list[list[int]] = []
    real_build = training.build_model

    def build(*args, **kwargs):
        model = real_build(*args, **kwargs)
        model.register_forward_pre_hook(
            lambda m, inputs: seen.append(inputs[0][:, 0].round().long().tolist()) if m.training else None)
        return model

    data = data_for(spec)
    x = data.x_train.clone()
    x[:, 0] = torch.arange(len(x), dtype=x.dtype)
    with monkeypatch.context() as patched:
        patched.setattr(training, "build_model", build)
        train(spec, dataclasses.replace(data, x_train=x), CPU)
    return seen


def test_twins_see_the_same_examples_in_the_same_batches_in_the_same_order(monkeypatch):
    epochs = {"max_epochs": 3, "stop_train_acc": None}  # the same number of steps for every twin
    natural = _batches_seen(tiny_spec(**epochs), monkeypatch)
    assert len(natural) == 3 * 4 and sorted(sum(natural[:4], [])) == list(range(120))  # 4 batches of 32 an epoch
    assert natural[:4] != natural[4:8]  # reshuffled every epoch
    for randomization, p in (("labels", 1.0), ("labels", 0.5)):
        assert _batches_seen(tiny_spec(randomization, p, **epochs), monkeypatch) == natural, randomization
    assert _batches_seen(tiny_spec(seed=1, **epochs), monkeypatch) != natural  # the order is the seed's
