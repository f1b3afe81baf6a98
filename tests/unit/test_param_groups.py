"""The optimizer's parameter groups (pretrained, new, gates) of each stage."""

from functools import partial

import pytest
import torch

from any2bokeh.models import AnyToBokeh
from any2bokeh.modules import Stage1GeometryGuided, Stage2TemporalRefinement, Stage3DecoderDetail

OPTIMIZER = partial(torch.optim.AdamW, lr=1e-5, weight_decay=0.01)
SETTINGS = {"pretrained": {}, "new": {"lr": 2e-4}, "gates": {"lr": 3e-4, "weight_decay": 0.0}}
# (lr, weight_decay) of each group that a stage trains, in the optimizer's order
EXPECTED = {
    Stage1GeometryGuided: {"pretrained": (1e-5, 0.01), "new": (2e-4, 0.01), "gates": (3e-4, 0.0)},
    Stage2TemporalRefinement: {"pretrained": (1e-5, 0.01)},
    Stage3DecoderDetail: {"pretrained": (1e-5, 0.01), "new": (2e-4, 0.01)},
}


def trained_names(stage, net):
    """What each stage trained before the groups existed."""
    if stage is Stage1GeometryGuided:
        return {"unet." + name for name, _ in net.unet.named_parameters()}
    if stage is Stage2TemporalRefinement:
        return {"unet." + name for name, _ in net.unet.temporal_parameters()}
    return {name for name, _ in net.decoder_parameters()}


@pytest.mark.parametrize("stage", EXPECTED, ids=lambda cls: cls.__name__)
def test_each_stage_optimizes_its_parameters_in_named_groups(stage):
    net = AnyToBokeh.tiny(seed=0)
    module = stage(net, OPTIMIZER, param_groups=SETTINGS)
    groups = module.configure_optimizers()["optimizer"].param_groups
    settings = {group["name"]: (group["lr"], group["weight_decay"]) for group in groups}
    assert list(settings) == list(EXPECTED[stage]) and settings == EXPECTED[stage]

    names = {id(p): name for name, p in net.named_parameters()}
    members = {group["name"]: [names[id(p)] for p in group["params"]] for group in groups}
    in_groups = [name for group in members.values() for name in group]
    # every trainable parameter in exactly one group, no frozen one, and each stage trains what it did before
    assert len(in_groups) == len(set(in_groups))
    assert set(in_groups) == {name for name, p in net.named_parameters() if p.requires_grad}
    assert set(in_groups) == trained_names(stage, net)

    new = set(net.new_parameter_names())
    gates = {name for name in new if name.endswith((".gate_attn", ".gate_ff"))}
    assert set(members.get("gates", [])) == (gates & set(in_groups))
    assert set(members.get("new", [])) == (new - gates) & set(in_groups)
    assert not new & set(members["pretrained"])
    if stage is Stage1GeometryGuided:
        assert len(gates) == 2 * len(net.unet.mpi_blocks) and set(members["gates"]) == gates
        assert any(name.startswith("unet.cond_embed.") for name in members["new"])
    if stage is Stage3DecoderDetail:
        assert members["new"] and all(name.startswith("vae.skip_convs.") for name in members["new"])


def test_without_settings_every_group_takes_the_optimizers_keywords():
    module = Stage1GeometryGuided(AnyToBokeh.tiny(seed=0), OPTIMIZER)
    groups = module.configure_optimizers()["optimizer"].param_groups
    assert [(g["name"], g["lr"], g["weight_decay"]) for g in groups] == [
        ("pretrained", 1e-5, 0.01), ("new", 1e-5, 0.01), ("gates", 1e-5, 0.01),
    ]


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"gate": {"lr": 1e-4}}, r"unknown group\(s\) \['gate'\]; the groups are \['pretrained', 'new', 'gates'\]"),
        ({"new": 1e-4}, "param_groups.new must be optimizer keywords"),
        ({"new": {"params": []}}, "param_groups.new must be optimizer keywords"),
    ],
)
def test_bad_group_settings_raise_when_the_module_is_built(settings, message):
    with pytest.raises(ValueError, match=message):
        Stage1GeometryGuided(AnyToBokeh.tiny(seed=0), OPTIMIZER, param_groups=settings)


def test_a_keyword_the_optimizer_does_not_take_raises():
    module = Stage1GeometryGuided(AnyToBokeh.tiny(seed=0), OPTIMIZER, param_groups={"gates": {"learning_rate": 1.0}})
    with pytest.raises(ValueError, match=r"AdamW takes no \['learning_rate'\]"):
        module.configure_optimizers()


def test_the_scheduler_scales_each_groups_own_rate():
    scheduler = partial(torch.optim.lr_scheduler.LambdaLR, lr_lambda=lambda step: 0.5 ** step)
    module = Stage1GeometryGuided(AnyToBokeh.tiny(seed=0), OPTIMIZER, scheduler=scheduler, param_groups=SETTINGS)
    configured = module.configure_optimizers()
    optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    optimizer.step()
    scheduler.step()
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([0.5e-5, 1e-4, 1.5e-4])
