import torch
import torch.nn.functional as F

from atso.models import build_model, count_parameters
from atso.models.small_unet import SmallUNet


def test_default_size_is_compact():
    assert 500_000 <= count_parameters(build_model("small_unet", num_classes=11)) <= 2_000_000


def test_same_seed_gives_the_same_model_and_output():
    image = torch.randn(2, 3, 40, 24)
    outputs = []
    for _ in range(2):
        torch.manual_seed(3)
        outputs.append(build_model("small_unet", num_classes=4, base_channels=8)(image))
    assert torch.equal(outputs[0], outputs[1])


def test_unpadded_network_accepts_sizes_its_depth_does_not_divide():
    network = SmallUNet(in_channels=1, num_classes=2, base_channels=4, depth=2)
    assert network(torch.randn(1, 1, 13, 10)).shape == (1, 2, 13, 10)


def test_loss_falls_when_fitting_a_fixed_batch():
    torch.manual_seed(0)
    model = build_model("small_unet", num_classes=3, base_channels=8, depth=3)
    image = torch.randn(2, 3, 24, 24)
    target = image.argmax(dim=1)  # a per-pixel rule the network can learn in a few steps
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for _ in range(20):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(image), target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] > 0.9  # about ln 3 at the start
    assert losses[-1] < 0.5 * losses[0], losses
