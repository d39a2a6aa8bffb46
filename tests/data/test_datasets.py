import numpy as np
import pytest
import torch
from PIL import Image

from atso.data.datasets import InferenceDataset, IterationBatches, TrainingDataset, TrainingPair
from atso.data.description import DatasetDescription
from atso.data.images import write_label_png
from atso.data.samples import Sample
from atso.data.transforms import Augmentation, to_tensor

H, W = 20, 24
# Raw mask value 0 means class 1 and 5 means "unlabelled"; pseudo-labels are never remapped.
DESCRIPTION = DatasetDescription(classes=["a", "b", "c"], remap={0: 1, 5: 255})
IDENTITY = Augmentation(scale_range=(1.0, 1.0), hflip=False)


def _image(path, seed):
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)).save(path)
    return path


def _raw_labels():
    labels = np.zeros((H, W), dtype=np.uint8)
    labels[:, W // 2 :] = 2
    labels[: H // 4] = 5
    return labels


def _pairs(tmp_path, n):
    pairs = []
    for i in range(n):
        image = _image(tmp_path / f"img{i}.png", i)
        mask = tmp_path / f"mask{i}.png"
        Image.fromarray(_raw_labels()).save(mask)
        pairs.append(TrainingPair(f"img{i}", image, mask, target_is_pseudo=False))
    return pairs


def _dataset(pairs, augmentation=IDENTITY, batch_size=2, seed=0, input_size=(H, W), **kwargs):
    return TrainingDataset(pairs, DESCRIPTION, input_size, augmentation, batch_size, seed, **kwargs)


def test_pair_index_covers_every_pair_once_per_epoch(tmp_path):
    dataset = _dataset(_pairs(tmp_path, 5), batch_size=2)
    positions = [(it, slot) for it in range(10) for slot in range(2)]  # 20 positions = 4 epochs
    indices = [dataset.pair_index(it, slot) for it, slot in positions]
    epochs = [indices[e * 5 : (e + 1) * 5] for e in range(4)]
    for epoch in epochs:
        assert sorted(epoch) == [0, 1, 2, 3, 4]
    assert len({tuple(epoch) for epoch in epochs}) > 1  # each epoch is reshuffled
    assert indices == [_dataset(dataset.pairs, batch_size=2).pair_index(it, slot) for it, slot in positions]


def test_pair_index_depends_on_position_not_batch_size(tmp_path):
    pairs = _pairs(tmp_path, 5)
    by_two = _dataset(pairs, batch_size=2)
    by_one = _dataset(pairs, batch_size=1)
    assert [by_two.pair_index(it, s) for it in range(5) for s in range(2)] == [by_one.pair_index(p, 0) for p in range(10)]
    assert len(by_two) == 5


def test_getitem_is_deterministic(tmp_path):
    pairs = _pairs(tmp_path, 3)
    augmentation = Augmentation(scale_range=(0.5, 1.5), blur_probability=0.5)
    dataset = _dataset(pairs, augmentation)
    fresh = _dataset(pairs, augmentation, cache=False)
    for key in [(0, 0), (0, 1), (7, 1)]:
        image, target = dataset[key]
        assert image.shape == (3, H, W) and image.dtype == torch.float32
        assert target.shape == (H, W) and target.dtype == torch.int64
        for again_image, again_target in (dataset[key], fresh[key]):
            assert torch.equal(image, again_image)
            assert torch.equal(target, again_target)
    assert not torch.equal(dataset[(0, 0)][0], dataset[(1, 0)][0])  # another iteration, another draw


def test_ground_truth_is_remapped_and_pseudo_labels_read_as_is(tmp_path):
    image = _image(tmp_path / "img.png", 0)
    mask = tmp_path / "mask.png"
    Image.fromarray(_raw_labels()).save(mask)
    pseudo_labels = np.zeros((H, W), dtype=np.uint8)
    pseudo_labels[:, : W // 3] = 2
    pseudo_labels[-1] = 255
    pseudo = write_label_png(tmp_path / "pseudo.png", pseudo_labels, DESCRIPTION.color_palette())
    dataset = _dataset(
        [TrainingPair("img", image, mask, target_is_pseudo=False), TrainingPair("img", image, pseudo, target_is_pseudo=True)]
    )
    expected_truth = DESCRIPTION.lookup_table()[_raw_labels()]
    assert set(np.unique(expected_truth)) == {1, 2, 255}
    loaded_image, truth = dataset.load(0)
    np.testing.assert_array_equal(loaded_image, np.asarray(Image.open(image)))
    np.testing.assert_array_equal(truth, expected_truth)
    np.testing.assert_array_equal(dataset.load(1)[1], pseudo_labels)
    for iteration in range(3):
        for slot in range(2):
            tensor_image, target = dataset[(iteration, slot)]
            expected = pseudo_labels if dataset.pair_index(iteration, slot) == 1 else expected_truth
            np.testing.assert_array_equal(target.numpy(), expected)
            assert torch.equal(tensor_image, to_tensor(loaded_image))


def test_load_resizes_to_the_input_size_and_caches(tmp_path):
    dataset = _dataset(_pairs(tmp_path, 1), input_size=(16, 32))
    image, target = dataset.load(0)
    assert image.shape == (16, 32, 3) and target.shape == (16, 32)
    assert set(np.unique(target)) <= {1, 2, 255}
    assert dataset.load(0) is dataset.load(0)
    uncached = _dataset(dataset.pairs, input_size=(16, 32), cache=False)
    uncached.load(0)
    assert uncached._loaded == {}


def test_empty_training_set_is_rejected():
    with pytest.raises(ValueError, match="at least one pair"):
        _dataset([])


def test_iteration_batches():
    batches = IterationBatches(start=3, stop=6, batch_size=2)
    assert len(batches) == 3
    assert list(batches) == [[(3, 0), (3, 1)], [(4, 0), (4, 1)], [(5, 0), (5, 1)]]
    assert list(IterationBatches(3, 5, 4, slots=range(1, 3))) == [[(3, 1), (3, 2)], [(4, 1), (4, 2)]]
    assert len(IterationBatches(5, 5, 2)) == 0 and list(IterationBatches(5, 5, 2)) == []
    assert len(IterationBatches(6, 5, 2)) == 0


def test_iteration_batches_drive_a_data_loader(tmp_path):
    dataset = _dataset(_pairs(tmp_path, 3), batch_size=2)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=IterationBatches(0, 2, 2))
    batches = list(loader)
    assert len(batches) == 2
    images, targets = batches[1]
    assert images.shape == (2, 3, H, W) and targets.shape == (2, H, W)
    assert torch.equal(images[0], dataset[(1, 0)][0])


def test_inference_dataset_returns_original_size(tmp_path):
    big = tmp_path / "big.png"
    Image.fromarray(np.zeros((30, 40, 3), dtype=np.uint8)).save(big)
    samples = [Sample("img", _image(tmp_path / "img.png", 0)), Sample("big", big)]
    dataset = InferenceDataset(samples, (16, 32))
    assert len(dataset) == 2
    tensor, height, width, index = dataset[0]
    assert tensor.shape == (3, 16, 32) and (height, width, index) == (H, W, 0)
    tensor, height, width, index = dataset[1]
    assert tensor.shape == (3, 16, 32) and (height, width, index) == (30, 40, 1)


def test_labeled_share_fills_the_first_slots_of_every_batch_from_s(tmp_path):
    from atso.data.datasets import TrainingDataset, TrainingPair

    image = tmp_path / "i.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    pairs = [TrainingPair(f"s{i}", image, image, False) for i in range(3)]
    pairs += [TrainingPair(f"r{i}", image, image, True) for i in range(20)]
    dataset = TrainingDataset(pairs, DESCRIPTION, (8, 8), Augmentation(), batch_size=8, seed=0, labeled_share=0.5)
    drawn = [[dataset.pair_index(it, slot) for slot in range(8)] for it in range(12)]
    assert all(index < 3 for batch in drawn for index in batch[:4])
    assert all(index >= 3 for batch in drawn for index in batch[4:])
    seen_pseudo = sorted({index for batch in drawn for index in batch[4:]})
    assert seen_pseudo == list(range(3, 23))  # 48 draws cover an epoch of the 20 pseudo-labeled pairs
    pooled = TrainingDataset(pairs, DESCRIPTION, (8, 8), Augmentation(), batch_size=8, seed=0)
    assert sum(pooled.pair_index(it, slot) < 3 for it in range(12) for slot in range(8)) < 20


def _mixed_pairs(tmp_path):
    rng = np.random.default_rng(0)
    pairs = []
    for i in range(6):
        image, mask = tmp_path / f"i{i}.png", tmp_path / f"m{i}.png"
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(image)
        write_label_png(mask, np.full((8, 8), i % 3, np.uint8), [(0, 0, 0)] * 3)
        pairs.append(TrainingPair(f"p{i}", image, mask, i >= 2))
    return pairs


@pytest.mark.parametrize("mix", ["cutmix", "classmix"])
def test_mixing_touches_only_pseudo_labeled_items_and_is_repeatable(tmp_path, mix):
    pairs = _mixed_pairs(tmp_path)
    mixed = TrainingDataset(pairs, DESCRIPTION, (8, 8), Augmentation(scale_range=(1, 1), hflip=False), 4, 0, mix=mix)
    plain = TrainingDataset(pairs, DESCRIPTION, (8, 8), Augmentation(scale_range=(1, 1), hflip=False), 4, 0)
    changed = 0
    for iteration in range(6):
        for slot in range(4):
            index = plain.pair_index(iteration, slot)
            a, b = mixed[(iteration, slot)], plain[(iteration, slot)]
            assert torch.equal(a[0], mixed[(iteration, slot)][0])  # the same on every call
            if not pairs[index].target_is_pseudo:
                assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
            changed += not torch.equal(a[0], b[0])
    assert changed > 0


def test_strong_view_perturbs_pseudo_labeled_images_only_and_keeps_their_labels(tmp_path):
    from atso.data.transforms import StrongPhotometric

    pairs = _mixed_pairs(tmp_path)
    weak = Augmentation(scale_range=(1, 1), hflip=False)
    strong = StrongPhotometric(jitter_probability=1.0, grayscale_probability=0.0, blur_probability=0.0)
    perturbed = TrainingDataset(pairs, DESCRIPTION, (8, 8), weak, 4, 0, strong=strong)
    plain = TrainingDataset(pairs, DESCRIPTION, (8, 8), weak, 4, 0)
    changed = 0
    for iteration in range(6):
        for slot in range(4):
            index = plain.pair_index(iteration, slot)
            (a, la), (b, lb) = perturbed[(iteration, slot)], plain[(iteration, slot)]
            assert torch.equal(la, lb)  # photometric only: the labels still fit
            assert torch.equal(a, perturbed[(iteration, slot)][0])  # the same on every call
            if pairs[index].target_is_pseudo:
                changed += not torch.equal(a, b)
            else:
                assert torch.equal(a, b)
    assert changed > 0


def test_mix_probability_mixes_about_that_share_of_pseudo_labeled_items(tmp_path):
    pairs = _mixed_pairs(tmp_path)
    weak = Augmentation(scale_range=(1, 1), hflip=False)
    plain = TrainingDataset(pairs, DESCRIPTION, (8, 8), weak, 4, 0)
    shares = {}
    for probability in (0.0, 0.5, 1.0):
        mixed = TrainingDataset(pairs, DESCRIPTION, (8, 8), weak, 4, 0, mix="cutmix", mix_probability=probability)
        pseudo = [(it, slot) for it in range(50) for slot in range(4) if pairs[plain.pair_index(it, slot)].target_is_pseudo]
        shares[probability] = np.mean([not torch.equal(mixed[key][0], plain[key][0]) for key in pseudo])
    assert shares[0.0] == 0.0
    # An item is left unchanged also when its partner is itself (1 in 4 here).
    assert shares[1.0] > 0.6
    assert 0.35 < shares[0.5] / shares[1.0] < 0.65
