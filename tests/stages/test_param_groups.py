"""The optimizer's parameter groups (pretrained, new, gates) of each stage, and the logged gate strengths."""

import csv
from functools import partial

import pytest
import torch
import wandb
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from torch.utils.data import DataLoader

from any2bokeh.models import AnyToBokeh
from any2bokeh.stages import Stage1GeometryGuided, Stage2TemporalRefinement, Stage3DecoderDetail
from any2bokeh.stages.param_groups import check_saved_groups, parameter_groups
from tests.helpers.training_batches import batch

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


def set_gates(net):
    """Give every MPI block's gates distinct known values; returns them as (gate_attn, gate_ff) lists."""
    values = ([], [])
    with torch.no_grad():
        for i, block in enumerate(net.unet.mpi_blocks):
            for gate, start, kept in ((block.gate_attn, 0.3, values[0]), (block.gate_ff, -0.5, values[1])):
                gate.fill_(start + 0.1 * i)
                kept.append(start + 0.1 * i)
    return values


def mean_abs_tanh(values):
    return torch.tensor(values).tanh().abs().mean().item()


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
        ("pretrained", 1e-5, 0.01),
        ("new", 1e-5, 0.01),
        ("gates", 1e-5, 0.01),
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
    scheduler = partial(torch.optim.lr_scheduler.LambdaLR, lr_lambda=lambda step: 0.5**step)
    module = Stage1GeometryGuided(AnyToBokeh.tiny(seed=0), OPTIMIZER, scheduler=scheduler, param_groups=SETTINGS)
    configured = module.configure_optimizers()
    optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    optimizer.step()
    scheduler.step()
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([0.5e-5, 1e-4, 1.5e-4])


def test_a_saved_optimizer_must_hold_this_runs_groups_in_order():
    groups = parameter_groups(AnyToBokeh.tiny(seed=0), {})
    saved = [{"name": group["name"], "params": list(range(len(group["params"])))} for group in groups]
    check_saved_groups([{"param_groups": saved}], groups)
    for other in (saved[::-1], saved[:-1], [{"params": [i for g in saved for i in g["params"]]}]):
        with pytest.raises(ValueError, match="init_from="):
            check_saved_groups([{"param_groups": other}], groups)


def quiet_trainer(tmp_path, logger, **kwargs):
    return Trainer(
        logger=logger,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        accelerator="cpu",
        limit_val_batches=0,
        **kwargs,
    )


def test_training_logs_the_mean_gate_strength(tmp_path):
    net = AnyToBokeh.tiny(seed=0)
    attn, ff = set_gates(net)
    # stage 2 keeps the gates frozen, so the values logged at either step are the ones set here
    module = Stage2TemporalRefinement(net, OPTIMIZER)
    logger = CSVLogger(tmp_path, name="csv", version=0)
    trainer = quiet_trainer(tmp_path, logger, max_steps=2, log_every_n_steps=1)
    trainer.fit(module, DataLoader([batch()] * 2, batch_size=None))
    metrics = trainer.callback_metrics
    assert metrics["train/gate_attn"].item() == pytest.approx(mean_abs_tanh(attn))
    assert metrics["train/gate_ff"].item() == pytest.approx(mean_abs_tanh(ff))
    with open(tmp_path / "csv" / "version_0" / "metrics.csv") as file:
        rows = [row for row in csv.DictReader(file) if row["train/gate_attn"]]
    assert [float(row["train/gate_attn"]) for row in rows] == pytest.approx([mean_abs_tanh(attn)] * 2)


class RecordingWandbLogger(WandbLogger):
    """A WandbLogger that records what it would send instead of starting a run."""

    def __init__(self, save_dir):
        super().__init__(save_dir=save_dir, offline=True)
        self.sent = []

    @property
    def experiment(self):  # the Trainer touches it at setup; no wandb run is started
        return None

    def log_hyperparams(self, params, *args, **kwargs):
        pass

    def log_metrics(self, metrics, step=None):
        self.sent.append((step, metrics))


def test_wandb_gets_per_block_gate_histograms_every_log_interval(tmp_path):
    net = AnyToBokeh.tiny(seed=0)
    attn, _ = set_gates(net)
    logger = RecordingWandbLogger(tmp_path)
    trainer = quiet_trainer(tmp_path, logger, max_steps=3, log_every_n_steps=2)
    trainer.fit(Stage2TemporalRefinement(net, OPTIMIZER), DataLoader([batch()] * 3, batch_size=None))
    histograms = [(step, metrics) for step, metrics in logger.sent if "train/gate_attn_blocks" in metrics]
    assert [step for step, _ in histograms] == [0, 2]
    histogram = histograms[0][1]["train/gate_attn_blocks"]
    assert isinstance(histogram, wandb.Histogram)
    assert isinstance(histograms[0][1]["train/gate_ff_blocks"], wandb.Histogram)
    # every block's tanh(gate_attn) is counted once
    assert sum(histogram.histogram) == len(attn)
    assert histogram.bins[0] == pytest.approx(min(torch.tensor(attn).tanh().tolist()), abs=1e-6)
