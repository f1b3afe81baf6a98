"""Optimizer parameter groups: SVD's pretrained weights, the modules SVD lacks, and the MPI blocks' gates.

The new modules start from zero or from random weights while the pretrained ones are only fine-tuned, so
each group gets its own optimizer settings (`BokehModule(param_groups=...)`, `module.param_groups` in Hydra).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from any2bokeh.models.mpi_attention import MPIAttention

#: the groups, in the order the optimizer holds them
GROUP_NAMES = ("pretrained", "new", "gates")
#: the tanh gates of an MPI attention block (eq. 4)
GATE_NAMES = ("gate_attn", "gate_ff")


def mpi_gates(net: nn.Module) -> dict[str, list[nn.Parameter]]:
    """The gates of every MPI attention block in `net`, by name: {"gate_attn": [...], "gate_ff": [...]},
    one scalar parameter per block (empty lists for a net without MPI blocks)."""
    blocks = [module for module in net.modules() if isinstance(module, MPIAttention)]
    return {gate: [getattr(block, gate) for block in blocks] for gate in GATE_NAMES}


def gate_values(net: nn.Module) -> dict[str, torch.Tensor]:
    """tanh of every MPI block's gates, the effective gate strengths: {"gate_attn": [num_blocks], ...}.

    Detached float32 tensors; gate names without blocks are left out.
    """
    return {
        name: torch.stack([gate.detach().float() for gate in gates]).tanh()
        for name, gates in mpi_gates(net).items()
        if gates
    }


def check_group_settings(settings: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Per-group optimizer settings as plain dicts ({} for None); an unknown group name raises ValueError."""
    if settings is None:
        return {}
    if isinstance(settings, DictConfig):
        settings = OmegaConf.to_container(settings, resolve=True)
    if not isinstance(settings, Mapping):
        raise ValueError(f"param_groups must map group names to optimizer settings, got {type(settings).__name__}")
    unknown = sorted(set(settings) - set(GROUP_NAMES))
    if unknown:
        raise ValueError(f"param_groups: unknown group(s) {unknown}; the groups are {list(GROUP_NAMES)}")
    checked = {}
    for name, group in settings.items():
        group = {} if group is None else group
        if not isinstance(group, Mapping) or {"params", "name"} & set(group):
            raise ValueError(
                f"param_groups.{name} must be optimizer keywords (lr, weight_decay, ...) without params or name, "
                f"got {group!r}"
            )
        checked[name] = dict(group)
    return checked


def parameter_groups(net: nn.Module, settings: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The trainable parameters of `net` split into the optimizer groups of `GROUP_NAMES`.

    gates: the MPI blocks' tanh gates; new: the other parameters that SVD does not have
    (`net.new_parameter_names()`: MPI blocks, condition conv, VAE skip convs); pretrained: the rest.
    Each group is {"name", "params", **settings[name]}; frozen parameters and empty groups are left out.
    """
    new_names = set(net.new_parameter_names()) if hasattr(net, "new_parameter_names") else set()
    gate_ids = {id(gate) for gates in mpi_gates(net).values() for gate in gates}
    params: dict[str, list[nn.Parameter]] = {name: [] for name in GROUP_NAMES}
    for name, parameter in net.named_parameters():
        if not parameter.requires_grad:
            continue
        group = "gates" if id(parameter) in gate_ids else "new" if name in new_names else "pretrained"
        params[group].append(parameter)
    return [{"name": name, "params": params[name], **settings.get(name, {})} for name in GROUP_NAMES if params[name]]


def check_optimizer_keywords(optimizer: torch.optim.Optimizer, settings: Mapping[str, Mapping[str, Any]]) -> None:
    """Raise ValueError for a group setting that the optimizer does not take (torch would keep it silently)."""
    unknown = sorted({key for group in settings.values() for key in group} - set(optimizer.defaults))
    if unknown:
        raise ValueError(
            f"param_groups: {type(optimizer).__name__} takes no {unknown}; "
            f"its keywords are {sorted(optimizer.defaults)}"
        )


def check_saved_groups(optimizer_states: list[dict[str, Any]], groups: list[dict[str, Any]]) -> None:
    """Raise ValueError when a checkpoint's optimizer holds other groups than `groups` (`parameter_groups`).

    Checkpoints written before the groups existed hold one unnamed group; torch would refuse them with a
    bare size mismatch, or, worse, give a group another group's moments when only the order differs.
    """
    expected = [(group["name"], len(group["params"])) for group in groups]
    for state in optimizer_states:
        saved = [(group.get("name"), len(group["params"])) for group in state["param_groups"]]
        if saved != expected:
            raise ValueError(
                f"the checkpoint's optimizer holds the groups {saved} (name, parameters), this run builds {expected}. "
                "A checkpoint saved before the parameter groups (or by another stage) cannot be resumed with "
                "ckpt_path; start a new run from its weights with init_from=<the checkpoint> instead "
                "(the optimizer state and step count start afresh)."
            )
