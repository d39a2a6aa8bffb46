import pytest
import torch

from atso.errors import AtsoError
from atso.models import available_models, build_model, count_parameters

# The smallest variant of each model, so that every case runs in well under a second.
SMALL_OPTIONS = {
    "small_unet": {"base_channels": 8},
    "basic_unet": {"features": (8, 8, 16, 32, 64, 8)},
    "monai_unet": {"channels": (8, 16, 32, 64, 128)},
    "deeplabv3plus": {"backbone": "resnet18"},
}


def test_available_models_lists_the_four_networks():
    assert available_models() == sorted(SMALL_OPTIONS)


@pytest.mark.parametrize("name", sorted(SMALL_OPTIONS))
# Odd sizes that no downsampling divides, and the smallest supported image alone in its batch
# (in training, normalisation layers fail on a coarsest map of 1x1 unless the model pads).
@pytest.mark.parametrize("batch, height, width", [(2, 37, 45), (1, 16, 16), (2, 64, 17)])
def test_output_has_input_size_and_gradients_reach_every_parameter(name, batch, height, width):
    torch.manual_seed(0)
    model = build_model(name, num_classes=5, in_channels=2, **SMALL_OPTIONS[name])
    logits = model(torch.randn(batch, 2, height, width))
    assert logits.shape == (batch, 5, height, width)
    logits.square().mean().backward()
    parameters = list(model.parameters())
    assert all(parameter.grad is not None for parameter in parameters)
    assert parameters[0].grad.abs().sum() > 0  # the first layer, which sees the image


def test_count_parameters_counts_scalars():
    model = build_model("small_unet", num_classes=3, base_channels=8, depth=2)
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())
    assert count_parameters(torch.nn.Linear(4, 3)) == 15


def test_unknown_model_names_the_model_and_the_choices():
    with pytest.raises(AtsoError, match="model 'unet9000' is unknown; choose one of: basic_unet, deeplabv3plus"):
        build_model("unet9000", num_classes=3)


@pytest.mark.parametrize("name", sorted(SMALL_OPTIONS))
def test_unknown_option_names_the_option_and_the_model(name):
    with pytest.raises(AtsoError, match=f"model '{name}' has no option widht"):
        build_model(name, num_classes=3, widht=4)


@pytest.mark.parametrize(
    "name, options, option",
    [
        ("small_unet", {"base_channels": 0}, "base_channels"),
        ("small_unet", {"depth": 2.5}, "depth"),
        ("basic_unet", {"features": (8, 8, 16)}, "features"),
        ("monai_unet", {"strides": (2, 2)}, "strides"),
        ("monai_unet", {"num_res_units": -1}, "num_res_units"),
        ("deeplabv3plus", {"backbone": "resnet9"}, "backbone"),
        ("deeplabv3plus", {"output_stride": 32}, "output_stride"),
    ],
)
def test_invalid_option_value_names_the_option_and_the_model(name, options, option):
    with pytest.raises(AtsoError, match=f"model '{name}' option {option}="):
        build_model(name, num_classes=3, **options)


def test_invalid_class_count_is_refused():
    with pytest.raises(AtsoError, match="num_classes=0"):
        build_model("small_unet", num_classes=0)
