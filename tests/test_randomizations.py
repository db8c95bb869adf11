"""Each randomization changes what it must and nothing else, and is a pure function of its seed."""

from __future__ import annotations

import pytest
import torch

from gentest.datasets import DataSplit
from gentest.errors import GentestError
from gentest.randomizations import RANDOMIZATIONS, canonical_p, randomize, tensor_digest

KINDS = ["none", "labels", "shuffled-pixels", "random-pixels", "gaussian"]


def big_labels(n: int = 20000, k: int = 10) -> DataSplit:
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, k, (n,), generator=gen)
    return DataSplit("toy", torch.zeros(n, 2), y, torch.zeros(50, 2), torch.randint(0, k, (50,), generator=gen), k)


def test_all_six_kinds_of_the_paper_are_registered():
    # `labels` covers both partially corrupted (0 < p < 1) and random (p = 1) labels.
    assert sorted(RANDOMIZATIONS) == sorted(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_data_bit_for_bit_and_other_seed_differs(image_data, kind):
    a = randomize(image_data, kind, None, seed=7)
    b = randomize(image_data, kind, None, seed=7)
    c = randomize(image_data, kind, None, seed=8)
    for name in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(a.data, name), getattr(b.data, name))
    assert a.record == b.record
    if kind != "none":
        assert not (torch.equal(a.data.x_train, c.data.x_train) and torch.equal(a.data.y_train, c.data.y_train))


@pytest.mark.parametrize("kind", KINDS)
def test_global_random_state_is_untouched(image_data, kind):
    before = torch.get_rng_state()
    randomize(image_data, kind, None, seed=3)
    assert torch.equal(before, torch.get_rng_state())


@pytest.mark.parametrize("kind", KINDS)
def test_test_labels_stay_clean_and_input_does_not_mutate(image_data, kind):
    original = {k: getattr(image_data, k).clone() for k in ("x_train", "y_train", "x_test", "y_test")}
    out = randomize(image_data, kind, None, seed=1)
    assert torch.equal(out.data.y_test, image_data.y_test)
    for k, v in original.items():
        assert torch.equal(getattr(image_data, k), v), f"{kind} mutated its input {k}"


def test_none_is_the_identity(image_data):
    out = randomize(image_data, "none", None, seed=0)
    assert out.data is image_data
    assert out.record["p"] == 0.0 and out.record["effective_corruption"] == 0.0


def test_labels_change_only_labels_and_realize_p_times_k_minus_1_over_k():
    data = big_labels()
    out = randomize(data, "labels", 0.5, seed=0)
    assert torch.equal(out.data.x_train, data.x_train)
    changed = (out.data.y_train != data.y_train).float().mean().item()
    # Expected 0.5 * 9/10 = 0.45; with 20,000 labels the standard error is 0.0035.
    assert out.record["expected_effective_corruption"] == pytest.approx(0.45)
    assert changed == pytest.approx(0.45, abs=0.015)
    assert out.record["effective_corruption"] == pytest.approx(changed)
    assert torch.equal(out.tensors["y_train"], out.data.y_train)


def test_random_labels_are_uniform_and_independent_of_the_truth():
    data = big_labels()
    out = randomize(data, "labels", 1.0, seed=0)
    counts = torch.bincount(out.data.y_train, minlength=10).float() / len(data.y_train)
    assert torch.allclose(counts, torch.full((10,), 0.1), atol=0.01)
    agreement = (out.data.y_train == data.y_train).float().mean().item()
    assert agreement == pytest.approx(0.1, abs=0.01)  # chance, 1/K


def test_label_corruption_sets_are_nested_in_p():
    data = big_labels(2000)
    corrupted = {p: randomize(data, "labels", p, seed=5).data.y_train != data.y_train for p in (0.2, 0.5, 0.8)}
    assert not (corrupted[0.2] & ~corrupted[0.5]).any()
    assert not (corrupted[0.5] & ~corrupted[0.8]).any()
    assert torch.equal(randomize(data, "labels", 0.0, seed=5).data.y_train, data.y_train)


def test_corrupt_test_labels_on_request():
    data = big_labels()
    out = randomize(data, "labels", 1.0, seed=0, corrupt_test_labels=True)
    assert not torch.equal(out.data.y_test, data.y_test)
    assert out.record["corrupt_test_labels"] is True


def test_shuffled_pixels_is_one_permutation_of_pixel_positions_for_every_image_train_and_test(image_data):
    """A colour pixel moves as one: the 16 positions of a 3x4x4 image are permuted, the same
    permutation for every channel, every image, train and test (the paper's "pixels")."""
    out = randomize(image_data, "shuffled-pixels", None, seed=2)
    perm = out.tensors["permutation"]
    assert sorted(perm.tolist()) == list(range(4 * 4)) and not torch.equal(perm, torch.arange(16))
    assert out.record["unit"] == "pixel" and out.record["values_per_position"] == 3
    for x, y in ((image_data.x_train, out.data.x_train), (image_data.x_test, out.data.x_test)):
        assert y.shape == x.shape
        assert torch.equal(y.reshape(len(y), 3, 16), x.reshape(len(x), 3, 16)[:, :, perm])
    assert torch.equal(out.data.y_train, image_data.y_train)


def test_shuffled_pixels_by_value_permutes_every_value_on_its_own(image_data):
    out = randomize(image_data, "shuffled-pixels", None, seed=2, pixel_unit="value")
    perm = out.tensors["permutation"]
    assert sorted(perm.tolist()) == list(range(3 * 4 * 4))
    for x, y in ((image_data.x_train, out.data.x_train), (image_data.x_test, out.data.x_test)):
        assert torch.equal(y.reshape(len(y), -1), x.reshape(len(x), -1)[:, perm])
    # RGB triples are broken up: some output pixel's (r, g, b) is no input pixel's triple.
    triples_in = {tuple(t) for t in image_data.x_train[0].reshape(3, 16).T.tolist()}
    triples_out = {tuple(t) for t in out.data.x_train[0].reshape(3, 16).T.tolist()}
    assert triples_out != triples_in


def test_random_pixels_permute_each_image_independently_keeping_rgb_triples(image_data):
    out = randomize(image_data, "random-pixels", None, seed=2)
    pix_in = image_data.x_train.reshape(30, 3, 16).transpose(1, 2)  # (image, position, rgb)
    pix_out = out.data.x_train.reshape(30, 3, 16).transpose(1, 2)
    perms = set()
    for i in range(30):
        # every output pixel is one input pixel of the same image, each used once
        where = [next(j for j in range(16) if torch.equal(pix_out[i, k], pix_in[i, j])) for k in range(16)]
        assert sorted(where) == list(range(16))
        perms.add(tuple(where))
    assert len(perms) == 30  # not one shared permutation
    assert torch.equal(out.data.y_train, image_data.y_train)
    assert not torch.equal(out.data.x_test, image_data.x_test)


def test_random_pixels_by_value_permutes_values_per_image(image_data):
    out = randomize(image_data, "random-pixels", None, seed=2, pixel_unit="value")
    flat_in = image_data.x_train.reshape(30, -1)
    flat_out = out.data.x_train.reshape(30, -1)
    # Every image keeps its multiset of values (a permutation of itself)...
    assert torch.equal(flat_in.sort(dim=1).values, flat_out.sort(dim=1).values)
    # ...but not by one shared permutation: recover each image's permutation and compare.
    perms = {tuple(torch.argsort(flat_in[i])[torch.argsort(torch.argsort(flat_out[i]))].tolist()) for i in range(30)}
    assert len(perms) == 30


@pytest.mark.parametrize("kind", ["shuffled-pixels", "random-pixels"])
def test_on_sequences_and_grey_images_both_units_are_the_same_permutation(kind):
    """One value per position (MNIST-1D's (40,), a (1, H, W) image): the two units give the
    same data bit for bit, the permutation of all features that gentest has always drawn."""
    gen = torch.Generator().manual_seed(5)
    for shape in ((40,), (1, 5, 5)):
        data = DataSplit("seq", torch.rand(20, *shape, generator=gen), torch.randint(0, 3, (20,), generator=gen),
                         torch.rand(6, *shape, generator=gen), torch.randint(0, 3, (6,), generator=gen), 3)
        a = randomize(data, kind, None, seed=3)
        b = randomize(data, kind, None, seed=3, pixel_unit="value")
        assert torch.equal(a.data.x_train, b.data.x_train) and torch.equal(a.data.x_test, b.data.x_test)
        flat = data.x_train.reshape(20, -1)
        g = torch.Generator().manual_seed(3)
        if kind == "shuffled-pixels":
            expected = flat[:, torch.randperm(flat.shape[1], generator=g)]
        else:
            expected = flat.gather(1, torch.rand(flat.shape, generator=g).argsort(dim=1))
        assert torch.equal(a.data.x_train.reshape(20, -1), expected)


def test_an_unknown_pixel_unit_is_refused(image_data):
    with pytest.raises(GentestError, match="pixel unit"):
        randomize(image_data, "shuffled-pixels", None, seed=2, pixel_unit="channel")


def test_gaussian_inputs_match_per_feature_mean_and_std():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(20000, 3) * torch.tensor([1.0, 4.0, 0.5]) + torch.tensor([0.0, -2.0, 5.0])
    data = DataSplit("toy", x, torch.zeros(20000, dtype=torch.long), x[:100], torch.zeros(100, dtype=torch.long), 2)
    out = randomize(data, "gaussian", None, seed=0)
    assert torch.allclose(out.data.x_train.mean(0), x.mean(0), atol=0.03)
    assert torch.allclose(out.data.x_train.std(0), x.std(0), rtol=0.03)
    assert out.data.x_test.shape == data.x_test.shape
    # Noise, not the data: no correlation with the original inputs.
    corr = torch.corrcoef(torch.stack([out.data.x_train[:, 1], x[:, 1]]))[0, 1]
    assert abs(corr) < 0.05


def test_record_fingerprints_let_anyone_check_a_regeneration(image_data):
    import hashlib

    out = randomize(image_data, "random-pixels", None, seed=11)
    # The fingerprint is the plain sha256 of the tensor's bytes (C order), which anyone can
    # recompute without gentest; a regeneration matches it, another seed or one changed value does not.
    assert out.record["train_inputs_sha256"] == hashlib.sha256(out.data.x_train.numpy().tobytes()).hexdigest()
    assert out.record["train_labels_sha256"] == hashlib.sha256(out.data.y_train.numpy().tobytes()).hexdigest()
    assert randomize(image_data, "random-pixels", None, seed=11).record["train_inputs_sha256"] == out.record["train_inputs_sha256"]
    assert randomize(image_data, "random-pixels", None, seed=12).record["train_inputs_sha256"] != out.record["train_inputs_sha256"]
    changed = out.data.x_train.clone()
    changed[0, 0, 0, 0] += 1e-6
    assert tensor_digest(changed) != out.record["train_inputs_sha256"]
    assert out.record["seed"] == 11


@pytest.mark.parametrize("p", [-0.1, 1.5, "half", True])
def test_p_outside_0_1_is_rejected(p):
    with pytest.raises(GentestError, match=r"p in \[0, 1\]"):
        canonical_p("labels", p)


def test_unknown_kind_and_p_for_a_non_partial_kind_are_rejected():
    with pytest.raises(GentestError, match="unknown randomization 'noise'; available: none, labels"):
        canonical_p("noise", None)
    with pytest.raises(GentestError, match="takes no p"):
        canonical_p("gaussian", 0.5)
    assert canonical_p("gaussian", None) == 1.0 and canonical_p("none", None) == 0.0
