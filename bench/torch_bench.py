"""PyTorch's side of bench/cnn_bench.sh: the same nets, batches and thread count as cortado,
timing whole training iterations (forward + backward + SGD update with momentum and weight
decay). Prints one line: `torch <net> <batch> <ms per iteration>`, the median of the timed
iterations (as bench/cnn_bench.sh takes cortado's)."""
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class CaffeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 96, 11, stride=4)
        self.conv2 = nn.Conv2d(96, 256, 5, padding=2, groups=2)
        self.conv3 = nn.Conv2d(256, 384, 3, padding=1)
        self.conv4 = nn.Conv2d(384, 384, 3, padding=1, groups=2)
        self.conv5 = nn.Conv2d(384, 256, 3, padding=1, groups=2)
        self.fc6 = nn.Linear(9216, 4096)
        self.fc7 = nn.Linear(4096, 4096)
        self.fc8 = nn.Linear(4096, 1000)

    def forward(self, x):
        x = F.local_response_norm(F.max_pool2d(F.relu(self.conv1(x)), 3, 2, ceil_mode=True), 5, 1e-4, 0.75, 1.0)
        x = F.local_response_norm(F.max_pool2d(F.relu(self.conv2(x)), 3, 2, ceil_mode=True), 5, 1e-4, 0.75, 1.0)
        x = F.relu(self.conv3(x))
        x = F.relu(self.conv4(x))
        x = F.max_pool2d(F.relu(self.conv5(x)), 3, 2, ceil_mode=True)
        x = F.dropout(F.relu(self.fc6(x.flatten(1))), 0.5, self.training)
        x = F.dropout(F.relu(self.fc7(x)), 0.5, self.training)
        return self.fc8(x)


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.ip1 = nn.Linear(800, 500)
        self.ip2 = nn.Linear(500, 10)

    def forward(self, x):
        x = F.max_pool2d(self.conv1(x), 2, 2)
        x = F.max_pool2d(self.conv2(x), 2, 2)
        return self.ip2(F.relu(self.ip1(x.flatten(1))))


def main():
    name, batch, iters, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    device = torch.device(sys.argv[5] if len(sys.argv) > 5 else "cpu")  # bench/gpu_bench.sh: cuda
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if name == "caffenet":
        model, shape, classes = CaffeNet(), (batch, 3, 227, 227), 1000
    else:
        model, shape, classes = LeNet(), (batch, 1, 28, 28), 10
    model = model.to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(shape).to(device)
    y = torch.randint(0, classes, (batch,)).to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def step():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    times = []
    for _ in range(iters):
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    ms = statistics.median(times)
    print("torch %s %d %.2f" % (name, batch, ms))


if __name__ == "__main__":
    main()
