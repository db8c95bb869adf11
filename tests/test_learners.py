"""The closed-form learners of Zhang et al. (2017) §5 and Theorem 1, checked against closed forms.

Every check is against an independent computation: numpy's solves and lstsq, scipy's pdist,
a 3-point RKHS norm by hand, and the exact label fit of the Theorem 1 construction.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist

from gentest.context import MeasureContext, RunCache
from gentest.datasets import DataSplit
from gentest.errors import GentestError, NotApplicable
from gentest.learners import kernel, linear, theorem1
from gentest.learners.features import build_features, validate_features
from gentest.spec import RunSpec, freeze
from gentest.suites import build_spec
from gentest.training import train

CPU = torch.device("cpu")


def gaussian_split(n: int, d: int, classes: int, seed: int = 0, n_test: int = 10, random_labels: bool = True) -> DataSplit:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen)
    y = torch.randint(0, classes, (n,), generator=gen)
    return DataSplit("gauss", x, y, torch.randn(n_test, d, generator=gen), torch.randint(0, classes, (n_test,), generator=gen), classes)


def learner_spec(learner: dict) -> RunSpec:
    return build_spec({"dataset": "synthetic", "learner": learner})


# -- RunSpec and suites ------------------------------------------------------------------------------

def test_sgd_runs_keep_their_keys():
    spec = RunSpec(dataset="mnist1d", model="mlp", randomization="labels", p=1.0, seed=3)
    # The key from before learners existed: the default learner is left out of the canonical form.
    assert spec.key == "228561788a2f50f0"
    assert "learner" not in spec.to_dict()
    assert build_spec({"dataset": "mnist1d", "model": "mlp", "learner": "sgd"}).key == build_spec(
        {"dataset": "mnist1d", "model": "mlp"}
    ).key


def test_learner_specs_round_trip_and_pair_only_with_their_randomized_twins():
    natural = build_spec({"dataset": "mnist1d", "learner": {"name": "kernel-interpolation", "features": "gabor"}})
    twin = build_spec({"dataset": "mnist1d", "learner": {"name": "kernel-interpolation", "features": "gabor"},
                       "randomization": "labels"})
    pixels = build_spec({"dataset": "mnist1d", "learner": {"name": "kernel-interpolation"}})
    assert natural.model == "kernel-interpolation/gabor" and pixels.model == "kernel-interpolation/pixels"
    assert RunSpec.from_dict(natural.to_dict()) == natural
    assert natural.to_dict()["learner"]["features"]["pool"] == 20  # options completed with defaults
    assert natural.pair_key == twin.pair_key and natural.key != twin.key
    assert natural.pair_key != pixels.pair_key


@pytest.mark.parametrize(
    "learner, words",
    [
        ('"boosting"', ["learner", "unknown learner 'boosting'", "kernel-interpolation"]),
        ('{ name = "kernel-interpolation", bandwidth = -1 }', ["learner", "'bandwidth'", "> 0"]),
        ('{ name = "kernel-interpolation", bandwidth = 0 }', ["learner", "'bandwidth'"]),
        ('{ name = "kernel-interpolation", features = "wavelets" }', ["learner", "'features'", "gabor"]),
        ('{ name = "linear-sgd", momentum = 1.5 }', ["learner", "'momentum'"]),
        ('{ name = "theorem1", width = 3 }', ["learner", "'width'"]),
        ('{ name = "sgd", lr = 0.1 }', ["learner", "no options"]),
    ],
)
def test_bad_learners_are_one_sentence_when_the_suite_loads(tmp_path, learner, words):
    from gentest.suites import load_suite

    path = tmp_path / "bad.toml"
    path.write_text(f'[base]\ndataset = "mnist1d"\nlearner = {learner}\n')
    with pytest.raises(GentestError) as err:
        load_suite(str(path))
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    for word in words:
        assert word in message


def test_sgd_still_needs_a_model(tmp_path):
    from gentest.suites import load_suite

    path = tmp_path / "s.toml"
    path.write_text('[base]\ndataset = "mnist1d"\n[axes]\nlearner = ["theorem1", "sgd"]\n')
    with pytest.raises(GentestError, match="'model'"):
        load_suite(str(path))


# -- kernel interpolation -----------------------------------------------------------------------------

def test_kernel_interpolation_fits_its_labels_to_float64_precision():
    data = gaussian_split(40, 6, 3)
    result = train(learner_spec({"name": "kernel-interpolation", "bandwidth": 1.5}), data, CPU)
    m = result.metrics
    assert m["train_acc"] == 1.0 and m["fitted"] and m["solver"] == "cholesky"
    assert m["max_train_residual"] < 1e-8
    # α against numpy's own solve of K α = Y with K built by hand.
    x = data.x_train.double().numpy()
    K = np.exp(-((x[:, None, :] - x[None, :, :]) ** 2).sum(-1) / (2 * 1.5**2))
    Y = np.eye(3)[data.y_train.numpy()]
    np.testing.assert_allclose(result.model.alpha.numpy(), np.linalg.solve(K, Y), rtol=1e-7, atol=1e-9)
    # Test predictions K(x_test, X) α by hand.
    xt = data.x_test.double().numpy()
    Kt = np.exp(-((xt[:, None, :] - x[None, :, :]) ** 2).sum(-1) / (2 * 1.5**2))
    acc = ((Kt @ np.linalg.solve(K, Y)).argmax(1) == data.y_test.numpy()).mean()
    assert m["test_acc"] == pytest.approx(acc)
    assert result.curve == [result.curve[0]] and m["steps_to_fit"] is None


def test_median_bandwidth_is_the_median_pairwise_distance():
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)  # 15 pairs: odd
    assert kernel.median_bandwidth(x) == pytest.approx(float(np.median(pdist(x.numpy()))), rel=1e-12)


def test_ridge_solves_the_regularized_system():
    data = gaussian_split(25, 4, 2)
    result = train(learner_spec({"name": "kernel-interpolation", "bandwidth": 2.0, "ridge": 0.5}), data, CPU)
    x = data.x_train.double().numpy()
    K = np.exp(-((x[:, None, :] - x[None, :, :]) ** 2).sum(-1) / 8.0)
    Y = np.eye(2)[data.y_train.numpy()]
    np.testing.assert_allclose(result.model.alpha.numpy(), np.linalg.solve(K + 0.5 * np.eye(25), Y), rtol=1e-8)
    assert result.metrics["max_train_residual"] > 1e-3  # a ridge does not interpolate


def test_rkhs_norm_of_three_points_by_hand():
    # Points 0, 1, 3 on a line, σ = 1, labels (class 0, class 1, class 0).
    x = torch.tensor([[0.0], [1.0], [3.0]])
    data = DataSplit("three", x, torch.tensor([0, 1, 0]), x.clone(), torch.tensor([0, 1, 0]), 2)
    result = train(learner_spec({"name": "kernel-interpolation", "bandwidth": 1.0}), data, CPU)
    e1, e4, e9 = math.exp(-1 / 2), math.exp(-4 / 2), math.exp(-9 / 2)
    K = np.array([[1, e1, e9], [e1, 1, e4], [e9, e4, 1]])
    Y = np.array([[1, 0], [0, 1], [1, 0]], dtype=float)
    by_hand = math.sqrt(np.trace(Y.T @ np.linalg.inv(K) @ Y))  # αᵀKα = YᵀK⁻¹Y since α = K⁻¹Y
    import measures.kernel as kernel_measures

    ctx = MeasureContext(RunCache(result.model, result.model, data), "kernel.rkhs_norm")
    assert kernel_measures.rkhs_norm(ctx) == pytest.approx(by_hand, rel=1e-10)
    assert ctx.kernel().gram().numpy() == pytest.approx(K, rel=1e-12)


def test_kernel_machine_is_not_a_network():
    data = gaussian_split(10, 3, 2)
    machine = train(learner_spec({"name": "kernel-interpolation"}), data, CPU).model
    ctx = MeasureContext(RunCache(machine, machine, data), "x")
    with pytest.raises(NotApplicable, match="kernel-interpolation has no nn.Module"):
        ctx.logits()
    with pytest.raises(NotApplicable, match="no nn.Module"):
        ctx.layers()
    with pytest.raises(NotApplicable, match="no nn.Module"):
        list(ctx.model.parameters())
    with pytest.raises(NotApplicable):
        ctx.linear_solution()
    assert set(machine.state_dict()) == {"alpha", "bandwidth", "ridge"}


def test_duplicate_inputs_and_the_memory_budget_are_one_sentence():
    data = gaussian_split(12, 3, 2)
    x = data.x_train.clone()
    x[7] = x[2]
    dup = DataSplit("dup", x, torch.tensor([0] * 6 + [1] * 6), data.x_test, data.y_test, 2)
    with pytest.raises(GentestError, match="training inputs 2 and 7 are identical"):
        train(learner_spec({"name": "kernel-interpolation"}), dup, CPU)
    train(learner_spec({"name": "kernel-interpolation", "ridge": 0.1}), dup, CPU)  # a ridge makes it solvable
    with pytest.raises(GentestError, match=r"kernel_memory_gb = 1e-09.*train_size") as err:
        train(learner_spec({"name": "kernel-interpolation", "kernel_memory_gb": 1e-9}), data, CPU)
    assert "\n" not in str(err.value)


def test_features_are_seeded_shared_by_twins_and_reload_from_state():
    spec = validate_features({"name": "random-features", "n_filters": 8, "pool": 2})
    a = build_features(spec, (40,), torch.Generator().manual_seed(3))
    b = build_features(spec, (40,), torch.Generator().manual_seed(3))
    x = torch.randn(5, 40)
    assert torch.equal(a(x), b(x)) and a(x).shape == (5, 16)
    c = build_features(spec, (40,))
    c.load_state_dict(a.state_dict())
    assert torch.equal(c(x), a(x))
    gabor = build_features(validate_features("gabor"), (40,))
    assert gabor(x).shape == (5, 5 * 20) and gabor(x).dtype == torch.float64
    with pytest.raises(GentestError, match="1-D"):
        build_features(validate_features("gabor"), (3, 8, 8))


# -- minimum-norm linear and its SGD twin ---------------------------------------------------------

def test_minimum_norm_solution_equals_numpy_lstsq():
    gen = np.random.default_rng(0)
    phi, Y = gen.normal(size=(15, 40)), gen.normal(size=(15, 3))
    w, solver = linear.minimum_norm_solution(torch.tensor(phi), torch.tensor(Y), "t", 1.0)
    assert solver == "gram-cholesky"
    np.testing.assert_allclose(w.numpy(), np.linalg.lstsq(phi, Y, rcond=None)[0], rtol=1e-9, atol=1e-12)
    # Rank-deficient (a repeated row): the SVD fallback is still lstsq's minimum-norm solution.
    phi[4] = phi[1]
    w, solver = linear.minimum_norm_solution(torch.tensor(phi), torch.tensor(Y), "t", 1.0)
    assert solver == "lstsq-gelsd"
    np.testing.assert_allclose(w.numpy(), np.linalg.lstsq(phi, Y, rcond=None)[0], rtol=1e-7, atol=1e-9)


def test_sgd_from_zero_converges_to_the_minimum_norm_solution():
    data = gaussian_split(20, 60, 3)  # d > n: infinitely many interpolants
    minnorm = train(learner_spec({"name": "linear-minnorm", "features": "pixels"}), data, CPU)
    sgd = train(learner_spec({"name": "linear-sgd", "features": "pixels", "epochs": 400, "batch_size": 5}), data, CPU)
    w_star, w = minnorm.model[2].weight.detach(), sgd.model[2].weight.detach()
    x, Y = data.x_train.double(), torch.eye(3, dtype=torch.float64)[data.y_train]
    np.testing.assert_allclose(w_star.T.numpy(), np.linalg.lstsq(x.numpy(), Y.numpy(), rcond=None)[0], rtol=1e-8, atol=1e-10)
    distance = (torch.linalg.norm(w - w_star) / torch.linalg.norm(w_star)).item()
    assert distance < 1e-4 and sgd.metrics["minnorm_relative_distance"] == pytest.approx(distance, rel=1e-6)
    assert sgd.metrics["train_acc"] == 1.0 and sgd.metrics["steps"] > 0
    # Early in training SGD is far from it: the distance shrinks as training converges.
    early = train(learner_spec({"name": "linear-sgd", "features": "pixels", "epochs": 2, "batch_size": 5}), data, CPU)
    assert early.metrics["minnorm_relative_distance"] > 10 * distance
    assert torch.count_nonzero(sgd.initial_state["2.weight"]) == 0  # from zero


def test_linear_solution_accessor_and_norm():
    data = gaussian_split(10, 30, 2)
    result = train(learner_spec({"name": "linear-minnorm", "features": "pixels"}), data, CPU)
    w = linear.solution_of(result.model)
    assert w.l2_norm() == pytest.approx(result.metrics["weight_l2"])
    assert w.l2_norm() == pytest.approx(np.linalg.norm(np.linalg.pinv(data.x_train.double().numpy()) @ np.eye(2)[data.y_train.numpy()]))


# -- Theorem 1 -------------------------------------------------------------------------------------------

def test_theorem1_represents_any_scalar_function_with_2n_plus_d_weights():
    gen = torch.Generator().manual_seed(0)
    n, d = 60, 7
    x, y = torch.randn(n, d, generator=gen, dtype=torch.float64), torch.randn(n, 1, generator=gen, dtype=torch.float64)
    a = torch.randn(d, generator=gen, dtype=torch.float64)
    b, W = theorem1.construct(x, y, a)
    net = theorem1.build_network(d, n, 1)
    with torch.no_grad():
        net[2].weight.copy_(a[None]), net[3].bias.copy_(b), net[5].weight.copy_(W.T)
    assert sum(p.numel() for p in net.parameters()) == 2 * n + d
    # c(x) = Σ_j w_j max(⟨a, x⟩ − b_j, 0), evaluated by hand, equals every label.
    c = (torch.relu((x @ a)[:, None] - b[None, :]) * W[:, 0]).sum(1)
    assert torch.max(torch.abs(c - y[:, 0])).item() < 1e-8
    assert torch.max(torch.abs(net[:-1](x)[:, 0] - y[:, 0])).item() < 1e-8
    z = torch.sort(x @ a).values  # interleaving: b_1 < z_(1) < b_2 < … < b_n < z_(n)
    assert torch.all(b < z) and torch.all(b[1:] > z[:-1])


def test_theorem1_fits_random_labels_on_random_data():
    data = gaussian_split(200, 10, 5, seed=3)
    rng = torch.random.get_rng_state()
    result = train(learner_spec({"name": "theorem1"}), data, CPU)
    assert torch.equal(torch.random.get_rng_state(), rng)  # seeded from the spec alone
    assert result.metrics["train_acc"] == 1.0 and result.metrics["max_train_residual"] < 1e-8
    assert result.metrics["n_params"] == 10 + 200 + 200 * 5
    assert torch.count_nonzero(result.initial_state["5.weight"]) == 0  # only W depends on the labels


def test_theorem1_refuses_duplicate_inputs():
    data = gaussian_split(10, 3, 2)
    x = data.x_train.clone()
    x[5] = x[1]
    with pytest.raises(GentestError, match="inputs 1 and 5 have the same projection"):
        train(learner_spec({"name": "theorem1"}), DataSplit("d", x, data.y_train, data.x_test, data.y_test, 2), CPU)
