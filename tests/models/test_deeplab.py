import pytest
import torch

from atso.errors import AtsoError
from atso.models import build_model
from atso.models.deeplab import backbone_features, build_backbone


def torchvision_resnet18_keys() -> set[str]:
    """The state-dict keys of torchvision's resnet18 without ``fc``, written out from its layout."""
    batch_norm = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = {"conv1.weight"} | {f"bn1.{name}" for name in batch_norm}
    for stage in range(1, 5):
        for block in range(2):
            prefix = f"layer{stage}.{block}"
            keys |= {f"{prefix}.conv1.weight", f"{prefix}.conv2.weight"}
            keys |= {f"{prefix}.bn{index}.{name}" for index in (1, 2) for name in batch_norm}
            if stage > 1 and block == 0:
                keys |= {f"{prefix}.downsample.0.weight"} | {f"{prefix}.downsample.1.{name}" for name in batch_norm}
    return keys


def test_backbone_keys_are_torchvision_keys():
    backbone = build_model("deeplabv3plus", num_classes=3, backbone="resnet18").network.backbone
    assert set(backbone.state_dict()) == torchvision_resnet18_keys()


def save_torchvision_style_weights(path, seed: int) -> dict[str, torch.Tensor]:
    """Write the backbone of a seeded resnet18 DeepLab as a torchvision checkpoint, ``fc`` included."""
    torch.manual_seed(seed)
    backbone = build_model("deeplabv3plus", num_classes=3, backbone="resnet18").network.backbone
    for tensor in backbone.state_dict().values():  # non-default statistics, so loading them is visible
        if tensor.is_floating_point():
            tensor.uniform_(0.5, 1.5)
    weights = dict(backbone.state_dict())
    torch.save({**weights, "fc.weight": torch.randn(1000, 512), "fc.bias": torch.randn(1000)}, path)
    return weights


def test_pretrained_backbone_round_trip(tmp_path):
    path = tmp_path / "resnet18.pth"
    saved = save_torchvision_style_weights(path, seed=1)
    torch.manual_seed(2)
    loaded = build_model("deeplabv3plus", num_classes=3, backbone="resnet18", pretrained_backbone=str(path))
    loaded_state = loaded.network.backbone.state_dict()
    assert loaded_state.keys() == saved.keys()
    for key, tensor in saved.items():
        assert torch.equal(loaded_state[key], tensor), key


def test_old_checkpoints_without_batch_counters_load(tmp_path):
    path = tmp_path / "old.pth"
    saved = save_torchvision_style_weights(path, seed=1)
    torch.save({k: v for k, v in saved.items() if not k.endswith("num_batches_tracked")}, path)
    loaded = build_model("deeplabv3plus", num_classes=3, backbone="resnet18", pretrained_backbone=path)
    assert torch.equal(loaded.network.backbone.conv1.weight, saved["conv1.weight"])


def test_missing_weights_file_names_the_path(tmp_path):
    path = tmp_path / "absent.pth"
    with pytest.raises(AtsoError, match=f"pretrained_backbone file '{path}' does not exist"):
        build_model("deeplabv3plus", num_classes=3, backbone="resnet18", pretrained_backbone=str(path))


def test_unreadable_weights_file_names_the_path(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(AtsoError, match=f"pretrained_backbone: {path}: cannot read checkpoint"):
        build_model("deeplabv3plus", num_classes=3, backbone="resnet18", pretrained_backbone=str(path))


def test_a_backbone_file_carrying_code_is_refused_and_nothing_runs(tmp_path):
    from conftest import write_code_carrying_file

    path, marker = write_code_carrying_file(tmp_path / "backbone.pth", tmp_path)
    with pytest.raises(AtsoError, match=f"pretrained_backbone: {path}: refusing to load") as info:
        build_model("deeplabv3plus", num_classes=3, backbone="resnet18", pretrained_backbone=str(path))
    assert not marker.exists() and "\n" not in str(info.value)


def test_weights_that_do_not_fit_report_how_many_keys_match(tmp_path):
    path = tmp_path / "resnet18.pth"
    save_torchvision_style_weights(path, seed=1)  # 120 tensors besides fc, 100 of them not batch counters
    with pytest.raises(AtsoError, match=r"'.*resnet18.pth' does not fit the resnet34 .* 120 of its 120 keys match"):
        build_model("deeplabv3plus", num_classes=3, backbone="resnet34", pretrained_backbone=str(path))
    with pytest.raises(AtsoError, match=r"resnet18 backbone for 1 input channels: 119 of its 120 keys match"):
        build_model("deeplabv3plus", num_classes=3, in_channels=1, backbone="resnet18", pretrained_backbone=str(path))


@pytest.mark.parametrize("output_stride", [8, 16])
def test_output_stride_sets_the_high_level_resolution(output_stride):
    torch.manual_seed(0)
    model = build_model("deeplabv3plus", num_classes=4, backbone="resnet18", output_stride=output_stride)
    image = torch.randn(2, 3, 37, 45)
    assert model(image).shape == (2, 4, 37, 45)
    low_level, high_level = backbone_features(model.network.backbone, torch.randn(1, 3, 64, 96))
    assert low_level.shape[-2:] == (16, 24)
    assert high_level.shape[-2:] == (64 // output_stride, 96 // output_stride)


@pytest.mark.parametrize("output_stride", [8, 16])
def test_dilated_backbone_is_the_strided_one_sampled_densely(output_stride):
    # Replacing a stride by dilation must only add positions between the old ones, not change them.
    torch.manual_seed(0)
    dilated = build_model("deeplabv3plus", num_classes=3, backbone="resnet18", output_stride=output_stride)
    dilated = dilated.network.backbone.eval()
    strided = build_backbone("resnet18", in_channels=3).eval()
    strided.load_state_dict(dilated.state_dict())
    image = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        dense = backbone_features(dilated, image)[1]
        sparse = backbone_features(strided, image)[1]
    step = 32 // output_stride
    assert sparse.shape[-2:] == (2, 3)
    torch.testing.assert_close(dense[..., ::step, ::step], sparse)


def test_resnet50_backbone_widths():
    model = build_model("deeplabv3plus", num_classes=4, backbone="resnet50").eval()
    low_level, high_level = backbone_features(model.network.backbone, torch.randn(1, 3, 32, 32))
    assert (low_level.shape[1], high_level.shape[1]) == (256, 2048)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 33, 20)).shape == (1, 4, 33, 20)
