"""The tiny MLP 3 -> 4 -> 3 (ReLU) with small integer weights that the measure tests compute
by hand: trained and initial weights as plain lists, and a builder."""

import torch
from torch import nn

# The tiny MLP 3 -> 4 -> 3 (ReLU), trained and initial weights as plain lists.
W1 = [[1, 0, -1], [2, 1, 0], [0, -1, 1], [1, 1, 1]]
B1 = [0, 1, -1, 0]
W2 = [[1, -1, 0, 2], [0, 1, 1, -1], [1, 0, -1, 0]]
B2 = [1, 0, 0]
W1_INIT = [[0, 0, -1], [1, 1, 0], [0, 0, 1], [1, 0, 1]]
B1_INIT = [0, 0, 0, 0]
W2_INIT = [[1, 0, 0, 1], [0, 1, 0, -1], [1, 0, 0, 0]]
B2_INIT = [0, 0, 0]


def mlp(w1, b1, w2, b2, bias=True) -> nn.Module:
    model = nn.Sequential(nn.Flatten(), nn.Linear(3, 4, bias=bias), nn.ReLU(), nn.Linear(4, 3, bias=bias))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor(w1, dtype=torch.float32))
        model[3].weight.copy_(torch.tensor(w2, dtype=torch.float32))
        if bias:
            model[1].bias.copy_(torch.tensor(b1, dtype=torch.float32))
            model[3].bias.copy_(torch.tensor(b2, dtype=torch.float32))
    return model
