"""LeNet-5 in the Caffe layout used by ADMM-NN (about 431k weights).

conv 20@5x5 -> max-pool 2 -> conv 50@5x5 -> max-pool 2 -> fc 500 -> ReLU -> fc 10 (no ReLU after
the convolutions, as in Caffe's lenet_train_test.prototxt).
"""

from torch import nn

INPUT_SHAPE = (1, 28, 28)


class LeNet5(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, kernel_size=5)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(20, 50, kernel_size=5)
        self.pool2 = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(50 * 4 * 4, 500)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x):
        x = self.pool1(self.conv1(x))
        x = self.pool2(self.conv2(x))
        x = x.flatten(1)
        return self.fc2(self.relu(self.fc1(x)))


def build(num_classes: int = 10) -> nn.Module:
    return LeNet5(num_classes)
