"""The real inputs the parity check runs on: a dataset's test split, else its training split.

With ``--data`` the dataset must open. Without it, export tries the data the checkpoint was trained on,
then the embedded set (when its channels fit); when neither opens (e.g. a checkpoint trained elsewhere on a
path this machine lacks) it falls back to seeded Gaussian inputs and says so in the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import InputContract
from ..errors import DataError, ExportError


@dataclass
class ParityData:
    """Inputs for parity (already normalised, N x C x H x W) and what they are.

    Attributes:
        inputs: the images.
        labels: their labels, or None (unlabeled data / synthetic inputs).
        spec: the dataset spec, or None for synthetic inputs.
        name: the dataset's name.
        split: ``test`` or ``train`` (None for synthetic inputs).
        mean: the normalisation mean, when known.
        std: the normalisation std, when known.
        note: why a fallback was used, if one was.
    """

    inputs: torch.Tensor
    labels: torch.Tensor | None
    spec: str | None
    name: str
    split: str | None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    note: str | None = None

    def describe(self) -> dict[str, object]:
        """The manifest's ``data`` block."""
        out: dict[str, object] = {"spec": self.spec, "name": self.name, "split": self.split,
                                  "samples": int(len(self.inputs)), "labelled": self.labels is not None}
        if self.note:
            out["note"] = self.note
        return out


def _open(spec: str, size: int, contract: InputContract | None = None) -> tuple[object, str]:
    """Open the test split of ``spec`` (train split when it has none), converted to ``contract`` if given."""
    try:
        from ..data import open_dataset  # type: ignore[attr-defined]
    except ImportError as exc:  # the data package is older than this export code
        raise ExportError(f"--data needs sqakd_edge.data.open_dataset, which this install lacks ({exc})") from None
    try:
        return open_dataset(spec, "test", augment=False, input_size=size, contract=contract), "test"
    except DataError:
        return open_dataset(spec, "train", augment=False, input_size=size, contract=contract), "train"


def synthetic(n: int, shape: tuple[int, int, int], note: str) -> ParityData:
    """Seeded standard-normal inputs (already 'normalised'), for when no dataset can be opened."""
    gen = torch.Generator().manual_seed(0)
    return ParityData(torch.randn(n, *shape, generator=gen), None, None, "random-normal", None, note=note)


def load_parity_data(spec: str | None, n: int, shape: tuple[int, int, int], *, fallbacks: tuple[str, ...] = (),
                     contract: InputContract | None = None) -> ParityData:
    """``n`` inputs of ``shape`` (C, H, W), spread evenly over the dataset.

    Args:
        spec: the ``--data`` spec (must open), or None.
        n: how many inputs (fewer if the dataset is smaller).
        shape: the model's input (C, H, W); H must equal W.
        fallbacks: specs to try in order when ``spec`` is None (checkpoint's data, ``embedded``).
        contract: the model's input contract: images are converted to it (channels, size, mean/std).

    Returns:
        The inputs and what they are.

    Raises:
        DataError: ``spec`` cannot be opened or its images do not fit ``shape``.
    """
    channels, height, width = shape
    if spec is not None:
        return _take(*_open(spec, height, contract), spec, n, shape)
    reasons = []
    for candidate in fallbacks:
        try:
            info, split = _open(candidate, height, contract)
            data = _take(info, split, candidate, n, shape)
        except (DataError, ExportError) as exc:
            reasons.append(f"{candidate}: {str(exc)[:120]}")
            continue
        if reasons:
            data.note = f"used {candidate} because {'; '.join(reasons)}"
        return data
    why = "; ".join(reasons) if reasons else "no dataset given"
    return synthetic(n, shape, f"no dataset could be opened ({why}); parity ran on seeded Gaussian inputs — "
                               "pass --data SPEC for real images")


def _take(info: object, split: str, spec: str, n: int, shape: tuple[int, int, int]) -> ParityData:
    ds = info.dataset  # type: ignore[attr-defined]
    if info.in_channels != shape[0]:  # type: ignore[attr-defined]
        raise DataError(f"{spec} has {info.in_channels}-channel images but the model takes {shape[0]} channels; "  # type: ignore[attr-defined]
                        "pass --data with images like the training data")
    total = len(ds)
    if total == 0:
        raise DataError(f"{spec} ({split} split) holds no images")
    count = min(n, total)
    index = torch.linspace(0, total - 1, count).round().long().tolist()
    images, labels = [], []
    for i in index:
        image, label = ds[i]
        images.append(image)
        labels.append(int(label))
    inputs = torch.stack(images).to(torch.float32)
    if tuple(inputs.shape[1:]) != tuple(shape):
        raise DataError(f"{spec} gives images of shape {tuple(inputs.shape[1:])}, the model takes {tuple(shape)}")
    labelled = bool(getattr(info, "labelled", False)) and all(lb >= 0 for lb in labels)
    mean = tuple(getattr(info, "mean", ()) or ()) or None
    std = tuple(getattr(info, "std", ()) or ()) or None
    return ParityData(inputs, torch.tensor(labels) if labelled else None, spec, str(getattr(info, "name", spec)),
                      split, mean, std)
