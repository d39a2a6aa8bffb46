"""Volume prediction (RSTN): each view's network over its slices, restacked, mapped back and fused."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from tqdm import tqdm

from atso.config import VolumeConfig
from atso.data.resampling import resample_to_shape
from atso.data.samples import Sample
from atso.data.slicing import slice_volume, stack_slices
from atso.data.volume_slices import prepare_image, resize_slices
from atso.data.volumes import read_volume
from atso.inference.fusion import average_probabilities, majority_vote
from atso.inference.predictor import Prediction, Predictor
from atso.models.views import ViewNetworks


class VolumePredictor(Predictor):
    """Runs named volume models over volumes, with the settings and interface of :class:`Predictor`.

    A group's models are averaged per view (softmax), then the views are fused: by majority vote of
    their labels, or by their mean probability (``settings.fusion``). Predictions lie on each scan's own
    grid; ``Prediction.grid`` is the scan, so a label can be written with its affine and header.
    """

    def __init__(
        self, models: dict[str, ViewNetworks], settings: VolumeConfig, input_size: tuple[int, int], device: torch.device,
        **options,
    ) -> None:
        """``settings``: how the models cut and fuse volumes; ``options`` as for :class:`Predictor`."""
        super().__init__(models, input_size, device, **options)  # type: ignore[arg-type]
        self.settings = settings

    def compile_networks(self) -> None:
        """``torch.compile`` each view's network in place: the predictor calls them, not the model."""
        for model in self.models.values():
            for network in model.networks.values():
                network.compile()

    @torch.inference_mode()
    def view_probabilities(self, network: torch.nn.Module, data: np.ndarray, view: str) -> np.ndarray:
        """``K x X x Y x Z`` class probabilities of one view's network on a prepared volume."""
        slices = torch.from_numpy(slice_volume(data, view, self.settings.context))
        size = tuple(slices.shape[-2:])
        outputs = []
        for start in range(0, len(slices), self.batch_size):
            batch = resize_slices(slices[start : start + self.batch_size], self.input_size).to(self.device)
            probabilities = self._softmax(network, batch)
            outputs.append(resize_slices(probabilities, size).clamp_(0, 1).cpu())
        return stack_slices(torch.cat(outputs).numpy(), view, data.shape)

    @torch.inference_mode()
    def predict(
        self, samples: list[Sample], groups: dict[str, list[str]], desc: str = "predict", superclass_table=None
    ) -> Iterator[tuple[Sample, dict[str, Prediction]]]:
        """Yield each volume with one fused :class:`Prediction` per group, on the scan's grid."""
        if superclass_table is not None:
            raise ValueError("super-class pseudo-labels are for 2D images; volumes use full classes")
        needed = sorted({name for members in groups.values() for name in members})
        views = self.models[needed[0]].views
        progress = tqdm(samples, desc=desc, unit="vol", disable=self.quiet, dynamic_ncols=True, leave=False)
        for sample in progress:
            volume = read_volume(sample.image, kind="image")
            data = prepare_image(volume, self.settings)
            per_view: dict[str, list[np.ndarray]] = {group: [] for group in groups}
            for view in views:
                probabilities = {name: self.view_probabilities(self.models[name].network(view), data, view) for name in needed}
                for group, members in groups.items():
                    mean = average_probabilities([probabilities[name] for name in members])
                    if mean.shape[1:] != volume.shape:  # back from the normalised slice spacing
                        mean = resample_to_shape(mean, volume.shape, "linear")
                    per_view[group].append(mean)
            result = {}
            for group, probability_volumes in per_view.items():
                mean = average_probabilities(probability_volumes)
                if self.settings.fusion == "majority":
                    labels = majority_vote([p.argmax(axis=0).astype(np.uint8) for p in probability_volumes], len(mean))
                else:
                    labels = mean.argmax(axis=0).astype(np.uint8)
                # Confidence: the fused class's mean probability over the views.
                confidence = np.take_along_axis(mean, labels[None].astype(np.int64), axis=0)[0]
                result[group] = Prediction(labels, confidence.astype(np.float32), grid=volume)
            yield sample, result
