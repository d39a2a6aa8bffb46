"""One model on given pairs: the loss falls, a resumed run equals an uninterrupted one, NaN stops it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atso.data.datasets import TrainingDataset, TrainingPair
from atso.data.description import load_description
from atso.data.transforms import Augmentation
from atso.errors import AtsoError
from atso.models import build_model
from atso.training.trainer import Batch, Callback, LogTo, Trainer, TrainingSettings, cross_entropy, poly_factor


@pytest.fixture
def dataset(tiny_dataset):
    description = load_description(tiny_dataset / "shapes.yaml")
    pairs = [
        TrainingPair(path.stem, path, tiny_dataset / "trainannot" / path.name, False)
        for path in sorted((tiny_dataset / "train").glob("*.png"))[:6]
    ]
    return TrainingDataset(pairs, description, (32, 40), Augmentation(ignore_index=255), batch_size=4, seed=3)


def new_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("small_unet", 3, base_channels=4, depth=2)


def test_loss_falls(dataset, tmp_path):
    settings = TrainingSettings(iterations=40, lr=0.05, checkpoint_every=40, quiet=True, log_every=5)
    losses = Trainer(new_model(), dataset, settings, tmp_path / "state.pt", "test").run()
    assert len(losses) == 8
    assert np.mean(losses[-2:]) < 0.7 * np.mean(losses[:2])


def test_resume_from_a_checkpoint_equals_an_uninterrupted_run(dataset, tmp_path):
    settings = TrainingSettings(iterations=12, lr=0.05, checkpoint_every=4, quiet=True, log_every=4)
    straight = new_model()
    Trainer(straight, dataset, settings, tmp_path / "a.pt", "straight").run()

    state_path = tmp_path / "b.pt"
    _train_until(new_model(), dataset, settings, state_path, stop_after=8)
    resumed = new_model()  # a new process: weights come from the state file
    Trainer(resumed, dataset, settings, state_path, "resumed").run()
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    state = torch.load(state_path, weights_only=True)
    assert state["iteration"] == 12 and {"model", "optimizer", "scheduler"} <= set(state)


def _train_until(model, dataset, settings, state_path, stop_after):
    """Run the first ``stop_after`` iterations of a longer schedule, as a killed job would have."""
    import atso.training.trainer as trainer

    class Stop(Exception):
        pass

    def crash(point: str) -> None:
        if point.endswith(f":{stop_after}"):
            raise Stop

    original = trainer.maybe_crash
    trainer.maybe_crash = crash
    try:
        with pytest.raises(Stop):
            Trainer(model, dataset, settings, state_path, "partial", fault_point="train").run()
    finally:
        trainer.maybe_crash = original
    assert torch.load(state_path, weights_only=True)["iteration"] == stop_after


def test_nan_loss_stops_with_the_job_and_iteration(dataset, tmp_path):
    def nan_loss(logits, target):
        return logits.sum() * float("nan")

    settings = TrainingSettings(iterations=20, checkpoint_every=5, quiet=True, log_every=5)
    with pytest.raises(AtsoError, match=r"job-x: loss became nan at iteration 1;"):
        Trainer(new_model(), dataset, settings, tmp_path / "state.pt", "job-x", loss_fn=nan_loss).run()
    assert not (tmp_path / "state.pt").exists()


def test_cross_entropy_of_an_all_ignored_batch_is_zero_not_nan():
    logits = torch.randn(2, 3, 4, 4)
    target = torch.full((2, 4, 4), 255)
    assert cross_entropy(255)(logits, target).item() == 0.0


def test_poly_schedule():
    assert poly_factor(0, 100, 0.9) == 1.0
    assert poly_factor(50, 100, 1.0) == pytest.approx(0.5)
    assert poly_factor(100, 100, 0.9) == 0.0


def test_on_log_gets_each_logged_iteration_its_mean_loss_and_lr(dataset, tmp_path):
    settings = TrainingSettings(iterations=12, lr=0.05, poly_power=1.0, checkpoint_every=12, quiet=True, log_every=5)
    logged = []
    losses = Trainer(new_model(), dataset, settings, tmp_path / "state.pt", "test", callbacks=[LogTo(lambda *a: logged.append(a))]).run()
    assert [step for step, _, _ in logged] == [5, 10, 12]
    assert [loss for _, loss, _ in logged] == losses
    assert [lr for _, _, lr in logged] == pytest.approx([0.05 * (1 - 5 / 12), 0.05 * (1 - 10 / 12), 0.0])


def test_a_state_file_carrying_code_is_refused_and_nothing_runs(dataset, tmp_path):
    from conftest import write_code_carrying_file

    settings = TrainingSettings(iterations=4, lr=0.05, checkpoint_every=4, quiet=True, log_every=4)
    state_path = tmp_path / "state.pt"
    Trainer(new_model(), dataset, settings, state_path, "first").run()
    state = torch.load(state_path, weights_only=True)  # what the trainer saves is plain data only
    state["iteration"] = 2
    write_code_carrying_file(state_path, tmp_path, state)
    with pytest.raises(AtsoError, match="state.pt: refusing to load") as info:
        Trainer(new_model(), dataset, settings, state_path, "resumed").run()
    assert not (tmp_path / "code-ran.marker").exists() and "\n" not in str(info.value)


class _EMA(Callback):
    """An exponential moving average of the weights, updated after every optimizer step."""

    name = "ema"

    def __init__(self) -> None:
        self.shadow: dict[str, torch.Tensor] | None = None

    def on_train_start(self, trainer: Trainer) -> None:
        if self.shadow is None:
            self.shadow = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}

    def on_step_end(self, trainer: Trainer, iteration: int) -> None:
        for key, value in trainer.model.state_dict().items():
            if value.is_floating_point():
                self.shadow[key].mul_(0.9).add_(value.detach(), alpha=0.1)

    def state_dict(self) -> dict:
        return {"shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        self.shadow = state["shadow"]


class _FlipPseudo(Callback):
    """A strong augmentation of the pseudo-labeled rows only: a horizontal flip of image and target."""

    name = "flip"

    def __init__(self) -> None:
        self.seen: list[list[bool]] = []

    def on_batch(self, trainer: Trainer, batch: Batch) -> Batch:
        pseudo = trainer.pseudo_slots(batch)
        self.seen.append(pseudo.tolist())
        images = torch.where(pseudo[:, None, None, None], batch.images.flip(-1), batch.images)
        targets = torch.where(pseudo[:, None, None], batch.targets.flip(-1), batch.targets)
        return batch.replace(images=images, targets=targets)


class _Staged(Callback):
    """Staged data: the labeled pairs alone until ``at``, then all pairs."""

    name = "staged"

    def __init__(self, first, at: int) -> None:
        self.first, self.at = first, at

    def switch_iterations(self, trainer: Trainer) -> tuple[int, ...]:
        return (self.at,)

    def dataset(self, trainer: Trainer, iteration: int, dataset):
        return self.first if iteration < self.at else dataset


def test_callbacks_transform_pseudo_rows_keep_an_ema_and_switch_data_resumably(tiny_dataset, tmp_path):
    from atso.data.images import read_mask, write_label_png

    description = load_description(tiny_dataset / "shapes.yaml")
    paths = sorted((tiny_dataset / "train").glob("*.png"))[:8]
    pairs = [TrainingPair(p.stem, p, tiny_dataset / "trainannot" / p.name, False) for p in paths[:4]]
    (tmp_path / "labels").mkdir()
    for path in paths[4:]:  # pseudo-labels: label maps like those a teacher writes
        labels = read_mask(tiny_dataset / "trainannot" / path.name, description)
        target = write_label_png(tmp_path / "labels" / path.name, labels, description.color_palette(), 255)
        pairs.append(TrainingPair(path.stem, path, target, True))

    def datasets():
        make = lambda chosen: TrainingDataset(chosen, description, (32, 40), Augmentation(ignore_index=255), batch_size=4, seed=3)  # noqa: E731
        return make(pairs[:4]), make(pairs)

    def callbacks():
        labeled_only, _ = datasets()
        return [_Staged(labeled_only, at=6), _FlipPseudo(), _EMA()]

    settings = TrainingSettings(iterations=12, lr=0.05, checkpoint_every=4, quiet=True, log_every=4)
    straight, straight_callbacks = new_model(), callbacks()
    Trainer(straight, datasets()[1], settings, tmp_path / "a.pt", "straight", callbacks=straight_callbacks).run()
    flips = straight_callbacks[1].seen
    assert not any(any(row) for row in flips[:6]) and any(any(row) for row in flips[6:])  # S alone, then S + R

    state_path = tmp_path / "b.pt"
    import atso.training.trainer as trainer_module

    class Stop(Exception):
        pass

    def crash(point: str) -> None:
        if point.endswith(":8"):
            raise Stop

    original, trainer_module.maybe_crash = trainer_module.maybe_crash, crash
    try:
        with pytest.raises(Stop):
            Trainer(new_model(), datasets()[1], settings, state_path, "partial", callbacks=callbacks(), fault_point="train").run()
    finally:
        trainer_module.maybe_crash = original
    resumed, resumed_callbacks = new_model(), callbacks()
    Trainer(resumed, datasets()[1], settings, state_path, "resumed", callbacks=resumed_callbacks).run()
    assert resumed_callbacks[1].seen == flips[8:]
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
        assert torch.equal(straight_callbacks[2].shadow[key], resumed_callbacks[2].shadow[key]), key
    saved = torch.load(state_path, weights_only=True)["callbacks"]  # plain tensors and data: no pickled objects
    assert set(saved) == {"staged", "flip", "ema"}


def test_compile_compiles_the_network_it_trains(dataset, tmp_path, monkeypatch):
    compiled = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, *args, **kwargs: compiled.append(self))
    model = new_model()
    settings = TrainingSettings(iterations=2, checkpoint_every=2, quiet=True, compile=True)
    Trainer(model, dataset, settings, tmp_path / "state.pt", "test").run()
    assert compiled == [model]
