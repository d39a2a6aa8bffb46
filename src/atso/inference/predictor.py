"""Batch-streaming prediction for one model or an ensemble (mean softmax), at original image size."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from atso.data.datasets import InferenceDataset
from atso.data.samples import Sample


@torch.inference_mode()
def class_probabilities(
    model: torch.nn.Module, images: torch.Tensor, flip: bool, device: torch.device, amp: bool, amp_dtype: torch.dtype
) -> torch.Tensor:
    """Softmax of a network's logits, averaged with its mirror image's when ``flip`` (test-time flip)."""
    with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
        probabilities = model(images).float().softmax(dim=1)
        if flip:
            probabilities = (probabilities + model(images.flip(-1)).float().softmax(dim=1).flip(-1)) / 2
    return probabilities


@dataclass
class Prediction:
    """Class indices and the winning probability of one image (or volume), at its original size."""

    labels: np.ndarray
    confidence: np.ndarray
    grid: Any = None  # for a volume, the scan it lies on (affine and header for writing it)


class Predictor:
    """Runs named models over samples a batch at a time, so memory does not grow with the sample count.

    A *group* is a list of model names whose softmax outputs are averaged (one name: that model alone;
    several: their ensemble). Each model runs once per batch however many groups use it.
    """

    def __init__(
        self,
        models: dict[str, torch.nn.Module],
        input_size: tuple[int, int],
        device: torch.device,
        batch_size: int = 8,
        flip: bool = False,
        num_workers: int = 0,
        amp: bool = True,
        quiet: bool = False,
        amp_dtype: str = "bfloat16",
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        self.memory_format = torch.channels_last if channels_last else torch.preserve_format
        self.models = {name: model.to(device).eval() for name, model in models.items()}
        if channels_last:
            self.models = {name: model.to(memory_format=torch.channels_last) for name, model in self.models.items()}
        self.input_size = tuple(input_size)
        self.device = device
        self.batch_size = batch_size
        self.flip = flip
        self.num_workers = num_workers
        self.amp = amp and device.type == "cuda"
        self.amp_dtype = torch.float16 if amp_dtype == "float16" else torch.bfloat16
        self.quiet = quiet
        if compile:
            self.compile_networks()

    def compile_networks(self) -> None:
        """``torch.compile`` every network in place (``runtime.compile``): compiled on the first batch of each size."""
        for model in self.models.values():
            model.compile()

    def _softmax(self, model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
        return class_probabilities(model, images, self.flip, self.device, self.amp, self.amp_dtype)

    @torch.inference_mode()  # like no_grad, and spares the version counts of every tensor it makes
    def predict(
        self,
        samples: list[Sample],
        groups: dict[str, list[str]],
        desc: str = "predict",
        superclass_table: np.ndarray | None = None,
    ) -> Iterator[tuple[Sample, dict[str, Prediction]]]:
        """Yield each sample with one :class:`Prediction` per group; ``desc`` names the progress bar.

        With ``superclass_table`` (class -> super-class) the probabilities are summed within each
        super-class before the argmax, and labels are super-class indices.
        """
        reduce = None
        if superclass_table is not None:
            reduce = torch.as_tensor(np.asarray(superclass_table), dtype=torch.long, device=self.device)
        needed = sorted({name for members in groups.values() for name in members})
        loader = DataLoader(
            InferenceDataset(samples, self.input_size),
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
        )
        progress = tqdm(total=len(samples), desc=desc, unit="img", disable=self.quiet, dynamic_ncols=True, leave=False)
        try:
            for images, heights, widths, indices in loader:
                images = images.to(self.device, non_blocking=True, memory_format=self.memory_format)
                softmax = {name: self._softmax(self.models[name], images) for name in needed}
                for row, index in enumerate(indices.tolist()):
                    progress.update(1)
                    size = (int(heights[row]), int(widths[row]))
                    result = {}
                    for group, members in groups.items():
                        mean = torch.stack([softmax[name][row] for name in members]).mean(dim=0)
                        if reduce is not None:
                            coarse = mean.new_zeros((int(reduce.max()) + 1, *mean.shape[1:]))
                            mean = coarse.index_add_(0, reduce, mean)
                        resized = F.interpolate(mean[None], size=size, mode="bilinear", align_corners=False)[0]
                        confidence, labels = resized.max(dim=0)
                        result[group] = Prediction(
                            labels.to(torch.uint8).cpu().numpy(), confidence.cpu().numpy().astype(np.float32)
                        )
                    yield samples[index], result
        finally:
            progress.close()
