"""Local weight files of the metric networks, and a guard that keeps anything from downloading them.

No package ships the weights of RAFT, I3D or LPIPS's squeezenet backbone, and the machines that run
the evaluation may have no network. Every network-backed metric therefore reads its weights from a
local path, and a missing file is an error that names the file and where it is published.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from torch import Tensor, nn


class DownloadBlockedError(RuntimeError):
    """Raised when code tries to download weights while the evaluation runs."""


@contextmanager
def no_downloads() -> Iterator[None]:
    """Make torch.hub's and torchvision's weight downloads raise instead of reaching the network.

    torchmetrics builds LPIPS's backbone with torchvision's `weights=DEFAULT`, which downloads; the
    metrics here build networks without weights and load local files, and this guard makes any code
    path that still tries to download fail loudly instead.
    """

    def refuse(url: str, *args: Any, **kwargs: Any) -> None:
        raise DownloadBlockedError(
            f"refusing to download {url}: the evaluation metrics read their weights from local paths only; "
            "download the file yourself and pass its path"
        )

    # torchvision imports load_state_dict_from_url by name, so its module attribute is patched too
    import torchvision.models._api as torchvision_api

    with (
        mock.patch("torch.hub.load_state_dict_from_url", refuse),
        mock.patch("torch.hub.download_url_to_file", refuse),
        mock.patch.object(torchvision_api, "load_state_dict_from_url", refuse),
    ):
        yield


def require_file(path: str | Path | None, what: str, file_name: str, published_at: str) -> Path:
    """`path` as a Path when it is an existing file; else an error naming the expected file and its source.

    Args:
        path: the configured local path (None when not configured).
        what: the metric and network it is for, e.g. "LPIPS's squeezenet1_1 backbone".
        file_name: the published file's name.
        published_at: where it can be downloaded from.
    """
    hint = f"expected {file_name}, published at {published_at}"
    if path is None:
        raise FileNotFoundError(f"no weight file given for {what}: {hint}")
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"weight file for {what} not found at {path}: {hint}")
    return path


def is_torchscript(path: Path) -> bool:
    """Whether `path` is a TorchScript archive (torch.jit.save) rather than a pickled state dict."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.split("/", 2)[1:2] == ["code"] for name in archive.namelist())


def load_state_dict(path: Path, what: str) -> dict[str, Tensor]:
    """A state dict from a torch.save file (weights only: no code is unpickled)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path} is not a state dict of tensors for {what} (got {type(state).__name__})")
    return state


def load_into(network: nn.Module, path: Path, what: str, rename: Callable[[str], str] = lambda key: key) -> None:
    """Load the state dict at `path` into `network`, every key matching: a partial load is an error."""
    state = {rename(key): value for key, value in load_state_dict(path, what).items()}
    missing, unexpected = network.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise KeyError(
            f"{path} does not fit {what}: missing keys {sorted(missing)[:8]} ({len(missing)} in all), "
            f"unexpected keys {sorted(unexpected)[:8]} ({len(unexpected)} in all)"
        )


def frozen(network: nn.Module) -> nn.Module:
    """`network` in eval mode with no trainable parameter."""
    network.eval()
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    return network
