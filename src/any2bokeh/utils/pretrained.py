"""A transformers model folder in the hub's layout, checked before loading, so a missing file is named."""

from __future__ import annotations

from pathlib import Path

# the weights `from_pretrained` reads: one file or a sharded index
WEIGHT_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)


def check_model_folder(
    folder: str | Path, what: str, processor_files: tuple[str, ...] = ("preprocessor_config.json",), hint: str = ""
) -> Path:
    """`folder` as a Path once it holds config.json, one of `processor_files` and the weights; else a
    FileNotFoundError naming `what` ("depth model", "segmenter"), the folder and the missing file. `hint` follows
    the message of a folder that does not exist (what to download)."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} folder does not exist: {folder}{hint}")
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{what} folder {folder} has no config.json")
    if not any((folder / name).is_file() for name in processor_files):
        files = processor_files[0] if len(processor_files) == 1 else f"processor files ({' or '.join(processor_files)})"
        raise FileNotFoundError(f"{what} folder {folder} has no {files}")
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise FileNotFoundError(f"{what} folder {folder} has no weights ({' or '.join(WEIGHT_FILES[:2])})")
    return folder
