"""Train a tiny logistic regression model (plain Python, no Spark, no numpy).

Run it as a plain Python job with::

    chidori submit --kind python examples/train.py --epochs 20 --seed 7

It generates a deterministic synthetic binary classification data set from the
seed, trains with full-batch gradient descent, prints one progress line per
epoch and finally ``accuracy: 0.xxx``.
"""

from __future__ import annotations

import argparse
import math
import random
import sys

FEATURES = 4
SAMPLES = 400
LEARNING_RATE = 0.5


def make_data(seed: int) -> tuple[list[list[float]], list[int]]:
    rng = random.Random(seed)
    true_w = [rng.uniform(-2.0, 2.0) for _ in range(FEATURES)]
    xs: list[list[float]] = []
    ys: list[int] = []
    for _ in range(SAMPLES):
        x = [rng.gauss(0.0, 1.0) for _ in range(FEATURES)]
        margin = sum(w * v for w, v in zip(true_w, x, strict=True)) + rng.gauss(0.0, 0.3)
        xs.append(x)
        ys.append(1 if margin > 0 else 0)
    return xs, ys


def sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def predict(w: list[float], b: float, x: list[float]) -> float:
    return sigmoid(sum(wi * xi for wi, xi in zip(w, x, strict=True)) + b)


def accuracy(w: list[float], b: float, xs: list[list[float]], ys: list[int]) -> float:
    hits = sum(1 for x, y in zip(xs, ys, strict=True) if (predict(w, b, x) >= 0.5) == (y == 1))
    return hits / len(ys)


def train(epochs: int, seed: int) -> float:
    xs, ys = make_data(seed)
    w = [0.0] * FEATURES
    b = 0.0
    n = len(ys)
    for epoch in range(1, epochs + 1):
        grad_w = [0.0] * FEATURES
        grad_b = 0.0
        loss = 0.0
        for x, y in zip(xs, ys, strict=True):
            p = predict(w, b, x)
            err = p - y
            for i in range(FEATURES):
                grad_w[i] += err * x[i]
            grad_b += err
            loss -= math.log(max(p, 1e-12)) if y == 1 else math.log(max(1.0 - p, 1e-12))
        w = [wi - LEARNING_RATE * g / n for wi, g in zip(w, grad_w, strict=True)]
        b -= LEARNING_RATE * grad_b / n
        print(
            f"epoch {epoch}/{epochs} loss={loss / n:.4f} "
            f"train_accuracy={accuracy(w, b, xs, ys):.3f}",
            flush=True,
        )
    return accuracy(w, b, xs, ys)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    print(f"training logistic regression: epochs={args.epochs} seed={args.seed}", flush=True)
    acc = train(args.epochs, args.seed)
    print(f"accuracy: {acc:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
