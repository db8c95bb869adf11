"""Synthetic leaderboards for the report tests: built from scored synthetic values, no training."""

from __future__ import annotations

import json

import numpy as np

from gentest.leaderboard import Leaderboard, MeasureValue
from gentest.scoring import THRESHOLDS, ScoredRun, controls_ok, score_all

ARCHS = (("mlp", {"hidden": [512]}), ("mlp", {"hidden": [512, 512, 512]}), ("cnn1d", {"channels": 32}))
RECIPES = ({"weight_decay": 0.0, "lr_schedule": "constant"}, {"weight_decay": 5e-4, "lr_schedule": "exponential"})
STOPS = ({"stop_train_acc": 1.0, "stop_train_loss": None}, {"stop_train_acc": 1.01, "stop_train_loss": 0.01})
KINDS = (("none", 0.0), ("labels", 0.25), ("labels", 0.5), ("labels", 0.75), ("labels", 1.0),
         ("shuffled-pixels", 1.0), ("random-pixels", 1.0), ("gaussian", 1.0))


def standard_board(n_measures: int = 60, seeds=(0, 1), epochs: int = 60, archs=ARCHS, recipes=RECIPES,
                   stops=STOPS, kinds=KINDS, rng_seed: int = 0) -> Leaderboard:
    """A board the size of the ``standard`` suite (3 × 2 × 2 environments × 8 kinds × 2 seeds =
    192 runs, 60 measures), with learning curves and measure values that separate, invert or
    fail to different degrees."""
    rng = np.random.default_rng(rng_seed)
    runs, curves, scored = [], {}, []
    for a, (model, margs) in enumerate(archs):
        for recipe in recipes:
            for stop in stops:
                train = {**recipe, **stop}
                parts = [f"hidden={json.dumps(margs['hidden'], separators=(',', ':'))}" if "hidden" in margs else
                         f"channels={margs['channels']}"]
                parts += [f"{k}={json.dumps(v)}" for k, v in train.items()]
                env = f"mnist1d/{model} " + " ".join(parts)
                for seed in seeds:
                    pair = f"{env}/{seed}"
                    for kind, p in kinds:
                        key = f"{a}{len(runs):05d}{seed}"
                        test_acc = 0.9 - 0.8 * p if kind in ("none", "labels") else 0.1 + 0.05 * rng.random()
                        steps = int(400 * (1 + 0.6 * p if kind in ("none", "labels") else 2.0) * (1 + 0.05 * seed))
                        row = {
                            "key": key, "dataset": "mnist1d", "model": model, "randomization": kind, "p": p, "seed": seed,
                            "train_acc": 1.0, "test_acc": test_acc, "gap": 1.0 - test_acc, "steps_to_fit": steps,
                            "wall_s": 3.0, "device": "cpu", "environment": env, "pair_key": pair,
                            "model_args": margs, "dataset_args": {}, **{f"train.{k}": v for k, v in train.items()},
                        }
                        runs.append(row)
                        curves[key] = [
                            {"epoch": e, "steps": e * steps // epochs, "train_loss": 2.3 * np.exp(-4 * e / epochs) + 0.01,
                             "train_acc": min(1.0, e / epochs * 1.1), "test_acc": test_acc * min(1.0, 1.2 * e / epochs)}
                            for e in range(epochs + 1)
                        ]
                        scored.append(ScoredRun(key, pair, kind, p, seed, row["gap"], env,
                                                (("model", json.dumps(model)), ("model.args", json.dumps(margs)),
                                                 *((f"train.{k}", json.dumps(v)) for k, v in train.items()))))
    names = ["control.gap", "control.param_count"] + [f"family{i % 14}.measure_{i:02d}" for i in range(n_measures - 2)]
    values, by_measure = [], {}
    for i, name in enumerate(names):
        mine = {}
        for r in scored:
            if name == "control.gap":
                v = r.gap
            elif name == "control.param_count":
                v = 1000.0
            else:
                strength = (i % 7) / 3 - 1  # from -1 (inverts) to 1 (separates)
                v = float(strength * r.gap + rng.normal(0, 0.2))
            mine[r.key] = v
            values.append(MeasureValue(r.key, name, "1", v, None, 0.01, extra={"uncertainty": 0.01} if i % 5 == 0 else {}))
        by_measure[name] = mine
    scores = score_all([(n, n.split(".")[0], "higher-worse") for n in names], scored, by_measure, n_boot=200)
    ok, msg = controls_ok(scores)
    return Leaderboard(suite="standard-synthetic", gentest_version="0.0.test", runs=runs, curves=curves, measures=scores,
                       values=values, controls_ok=ok, controls_message=msg, thresholds=dict(THRESHOLDS))
