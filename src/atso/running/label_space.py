"""The run's label space: its description, the sources' own label maps onto it, and its super-classes."""

from __future__ import annotations

import numpy as np

from atso.data.description import DatasetDescription, load_description
from atso.data.samples import Sample
from atso.errors import AtsoError


class LabelSpace:
    """The classes a run scores and trains, and how each sample's mask maps onto them."""

    def __init__(self, description: DatasetDescription) -> None:
        self.description = description
        self._sources: dict[str, DatasetDescription] = {}

    @property
    def superclass_table(self) -> np.ndarray | None:
        """Class -> super-class, when the description groups its classes."""
        return self.description.superclass_table() if self.description.superclasses else None

    def mask_description(self, sample: Sample) -> DatasetDescription:
        """The description a sample's mask is read with: its source's own, or the run's."""
        if sample.label_space is None:
            return self.description
        if sample.label_space not in self._sources:
            own = load_description(sample.label_space)
            if own.classes != self.description.classes:
                raise AtsoError(
                    f"{sample.label_space}: its classes differ from the run's ('{self.description.name}'); "
                    "list the run's classes and map this dataset's raw values onto them with 'remap' and 'unmapped: ignore'"
                )
            self._sources[sample.label_space] = own
        return self._sources[sample.label_space]

    def to_superclasses(self, labels: np.ndarray) -> np.ndarray:
        """Full-class labels (with ignore) as super-class labels (with ignore)."""
        table = self.superclass_table
        assert table is not None
        ignore = self.description.ignore_index
        return np.where(labels == ignore, ignore, table[np.minimum(labels, len(table) - 1)]).astype(np.uint8)
