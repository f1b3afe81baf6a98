import hashlib
import os
import subprocess
import sys

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from any2bokeh.data import SyntheticBokehDataModule
from any2bokeh.data.datamodule import opposite_focus
from any2bokeh.data.dataset import BATCH_KEYS, SyntheticBokehDataset
from any2bokeh.data.procedural import ProceduralBackgrounds, ProceduralForegrounds
from any2bokeh.data.scenes import sample_scene
from any2bokeh.optics import raytrace

SIZE = dict(num_frames=3, height=32, width=32)


def sources():
    return ProceduralForegrounds(num_clips=8, size=32, num_frames=12, seed=1), ProceduralBackgrounds(
        num_images=8, size=32, seed=1
    )


def dataset(split="train", **options):
    return SyntheticBokehDataset(*sources(), split=split, **{"size": 6, **SIZE, **options})


def datamodule(**options):
    return SyntheticBokehDataModule(*sources(), **{**SIZE, "train_size": 6, "val_size": 2, "test_size": 2, **options})


def assert_same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def fingerprint(sample: dict) -> str:
    return hashlib.sha256(b"".join(sample[name].numpy().tobytes() for name in sorted(sample))).hexdigest()


def test_a_sample_depends_on_seed_split_and_index_only():
    reference = fingerprint(dataset(size=6)[3])
    # Not on the split's size, nor on the samples drawn before it.
    other = dataset(size=40)
    other[0], other[5]
    assert fingerprint(other[3]) == reference
    for changed in [dataset(seed=1)[3], dataset("val")[3], dataset()[4]]:
        assert fingerprint(changed) != reference
    # Another interpreter with another str-hash salt draws the same sample.
    code = "from test_datamodule import dataset, fingerprint; print(fingerprint(dataset(size=6)[3]))"
    path = [os.path.dirname(os.path.abspath(__file__)), os.environ.get("PYTHONPATH", "")]
    env = {"PYTHONHASHSEED": "123", "PATH": "", "PYTHONPATH": os.pathsep.join(p for p in path if p)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == reference


def test_same_index_same_sample_other_index_other_sample():
    a, b = dataset(), dataset()
    assert_same(a[2], b[2])
    assert not torch.equal(a[2]["images"], a[3]["images"])
    assert not torch.equal(a[2]["images"], dataset("val")[2]["images"])


def test_workers_and_main_process_give_identical_batches():
    ds = dataset()
    batches0 = list(DataLoader(ds, batch_size=2, num_workers=0))
    batches2 = list(DataLoader(ds, batch_size=2, num_workers=2))
    assert len(batches0) == len(batches2) == 3
    for b0, b2 in zip(batches0, batches2):
        assert_same(b0, b2)


def test_thread_count_does_not_change_a_sample():
    # Frames above torch's parallel grain size (32768 elements), so reductions do split.
    ds = dataset(num_frames=2, height=96, width=384)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ds[4]
        torch.set_num_threads(3)
        three = ds[4]
    finally:
        torch.set_num_threads(threads)
    assert_same(one, three)


def test_sample_shapes_and_ranges():
    s = dataset(scene={"max_objects": 2})[0]
    assert s["images"].shape == (3, 3, 3, 32, 32) and s["alphas"].shape == (3, 3, 1, 32, 32)
    assert s["planes"].shape == (3, 3, 3)
    assert s["aif"].shape == (3, 3, 32, 32) and s["disparity"].shape == (3, 1, 32, 32)
    assert s["disp_focus"].shape == s["k"].shape == s["k_raw"].shape == s["disp_focus_raw"].shape == (3,)
    assert s["disparity"].min() >= 0 and s["disparity"].max() <= 1


def test_rendered_batch_has_the_documented_keys_shapes_and_ranges():
    dm = datamodule(batch_size=2)
    dm.setup("fit")
    batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert tuple(batch) == BATCH_KEYS
    B, T, H, W = 2, 3, 32, 32
    shapes = {
        "aif": (B, T, 3, H, W),
        "bokeh": (B, T, 3, H, W),
        "disparity": (B, T, 1, H, W),
        "disp_focus": (B, T),
        "k": (B, T),
        "subject_mask": (B, T, 1, H, W),
    }
    for name, shape in shapes.items():
        assert batch[name].shape == shape, name
        assert batch[name].dtype == torch.float32, name
    for name in ("aif", "bokeh"):
        assert batch[name].min() >= -1 and batch[name].max() <= 1
        assert batch[name].min() < 0 < batch[name].max()  # really mapped to [-1, 1]
    assert batch["disparity"].min() >= 0 and batch["disparity"].max() <= 1
    assert (batch["disp_focus"] > 0).all() and (batch["disp_focus"] <= 1).all()
    assert set(batch["k"].unique().tolist()) <= {12.0, 16.0, 20.0, 24.0, 28.0}
    assert not torch.allclose(batch["aif"], batch["bokeh"], atol=1e-2)


def test_subject_in_focus_stays_sharp_and_zero_k_renders_the_aif():
    class Square:  # one opaque textured square
        def __len__(self):
            return 1

        def num_frames(self, index):
            return 1

        def load(self, index, frame_ids):
            rgb = torch.rand(len(frame_ids), 3, 16, 16, generator=torch.Generator().manual_seed(0))
            return rgb, torch.ones(len(frame_ids), 1, 16, 16)

    scene = {
        "min_objects": 1,
        "max_objects": 1,
        "object_height": (0.5, 0.5),
        "start_region": (0.5, 0.5),
        "k_values": (16,),
    }
    ds = SyntheticBokehDataset(Square(), sources()[1], split="val", size=2, scene=scene, **SIZE)
    r = ds.render_sample(1)
    solid = (r["subject_mask"] > 0.95).float()
    inside = -torch.nn.functional.max_pool2d(-solid, 5, stride=1, padding=2) == 1  # the subject, eroded by 2 px
    outside = r["subject_mask"] < 0.01
    assert inside.sum() > 10 and outside.sum() > 10
    err = (r["bokeh"] - r["aif"]).abs()
    assert err.expand(-1, 3, -1, -1)[inside.expand(-1, 3, -1, -1)].mean() < 0.02
    assert err.expand(-1, 3, -1, -1)[outside.expand(-1, 3, -1, -1)].mean() > 0.05
    r0 = dataset("val", scene={"k_values": (0,)}).render_sample(1)
    torch.testing.assert_close(r0["bokeh"], r0["aif"], rtol=0, atol=1e-4)


def test_render_sample_matches_the_datamodule_batch():
    dm = datamodule(batch_size=1)
    dm.setup("validate")
    batch = dm.on_after_batch_transfer(next(iter(dm.val_dataloader())), 0)
    single = dm.dataset("val").render_sample(0)
    for name in BATCH_KEYS:
        assert torch.equal(batch[name][0], single[name]), name


def test_perturbation_reaches_the_train_split_only():
    flip = lambda disparity, generator, subject_mask=None: 1 - disparity  # noqa: E731
    dm = datamodule(perturbation=flip)
    clean = dataset()[0]["disparity"]
    assert torch.equal(dm.dataset("train")[0]["disparity"], 1 - clean)
    assert torch.equal(dm.dataset("val")[0]["disparity"], dataset("val")[0]["disparity"])
    assert dm.dataset("val").perturbation is None and dm.dataset("test").perturbation is None


def test_disparity_perturbation_is_seeded_by_index():
    from any2bokeh.data import DisparityPerturbation

    a = datamodule(perturbation=DisparityPerturbation(p=1.0)).dataset("train")
    b = datamodule(perturbation=DisparityPerturbation(p=1.0)).dataset("train")
    clean = dataset()[1]["disparity"]
    assert torch.equal(a[1]["disparity"], b[1]["disparity"])
    assert not torch.equal(a[1]["disparity"], clean)
    assert a[1]["disparity"].min() >= 0 and a[1]["disparity"].max() <= 1


class _Recorder(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen = []

    def training_step(self, batch, batch_idx):
        self.seen.append({name: tuple(value.shape) for name, value in batch.items()})
        return (self.weight * batch["bokeh"].mean()).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_rendered_batches_outside_a_trainer_are_the_splits_batches_in_order():
    dm = datamodule(val_size=3)
    batches = list(dm.rendered_batches("val", "cpu", limit=2))
    assert len(batches) == 2 and len(list(dm.rendered_batches("val", "cpu"))) == 3
    expected = [dm.on_after_batch_transfer(batch, 0) for batch in dm.val_dataloader()]
    for batch, reference in zip(batches, expected):
        assert tuple(batch) == BATCH_KEYS
        assert_same(batch, reference)


def test_rendered_batches_at_another_k_change_only_the_ground_truth():
    dm = datamodule(val_size=2)
    base = list(dm.rendered_batches("val", "cpu"))
    sharp = list(dm.rendered_batches("val", "cpu", k_scale=0.0))
    double = list(dm.rendered_batches("val", "cpu", k_scale=2.0))
    for batch, at_zero, at_double in zip(base, sharp, double):
        for key in BATCH_KEYS:
            if key != "bokeh":
                assert torch.equal(batch[key], at_zero[key]) and torch.equal(batch[key], at_double[key]), key
        # no blur at K = 0: the ground truth is the all-in-focus frame
        assert (at_zero["bokeh"] - at_zero["aif"]).abs().max() < 1e-3
        assert (at_double["bokeh"] - batch["bokeh"]).abs().max() > 0.05


def test_opposite_focus_puts_the_renderers_focus_at_one_minus_d_f_in_the_clips_raw_units():
    for seed in range(4):
        scene = sample_scene(*sources(), torch.Generator().manual_seed(seed), **SIZE)
        batch = {name: getattr(scene, name)[None] for name in ("disp_focus", "disp_focus_raw", "k", "k_raw")}
        d_min, d_max = scene.disp_range.double()
        expected = d_min + (1 - scene.disp_focus.double()) * (d_max - d_min)
        assert torch.allclose(opposite_focus(batch)["disp_focus_raw"][0].double(), expected, rtol=1e-4, atol=1e-6)
    # K = 0 blurs nothing: the focus is kept, and nothing is divided by 0
    still = {**batch, "k": torch.zeros_like(batch["k"]), "k_raw": torch.zeros_like(batch["k_raw"])}
    assert torch.equal(opposite_focus(still)["disp_focus_raw"], batch["disp_focus_raw"])


def test_rendered_batches_at_the_opposite_focus_change_only_the_ground_truth():
    dm = datamodule(val_size=2)
    for batch, flipped in zip(dm.rendered_batches("val", "cpu"), dm.rendered_batches("val", "cpu", flip_focus=True)):
        for key in BATCH_KEYS:
            if key != "bokeh":
                assert torch.equal(batch[key], flipped[key]), key
        assert (flipped["bokeh"] - batch["bokeh"]).abs().max() > 0.05


def test_trainer_batches_are_rendered_by_the_hook():
    model, dm = _Recorder(), datamodule(batch_size=2)
    trainer = L.Trainer(
        fast_dev_run=1, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.fit(model, datamodule=dm)
    assert model.seen == [
        {
            "aif": (2, 3, 3, 32, 32),
            "bokeh": (2, 3, 3, 32, 32),
            "disparity": (2, 3, 1, 32, 32),
            "disp_focus": (2, 3),
            "k": (2, 3),
            "subject_mask": (2, 3, 1, 32, 32),
        }
    ]


def test_checkpoints_hold_plain_datamodule_hyperparameters(tmp_path):
    model, dm = _Recorder(), datamodule(batch_size=1, scene={"k_values": (8, 16)})
    trainer = L.Trainer(
        max_steps=1,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=dm)
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    checkpoint = torch.load(tmp_path / "last.ckpt", weights_only=True)
    hparams = checkpoint["datamodule_hyper_parameters"]
    assert hparams["scene"]["k_values"] == (8.0, 16.0) and hparams["num_frames"] == 3


@pytest.mark.parametrize(
    "options, message",
    [
        ({"scene": {"k_values": [-4, 8]}}, "K must be >= 0"),
        ({"scene": {"focus_modes": {"fixed": 1.0}, "focus_value": 1.5}}, r"\(0, 1\]"),
        ({"renderer": "splat"}, "unknown renderer"),
        ({"scene": {"tilt": 0.2, "object_c": (1.5, 5.0)}}, "need renderer='raytrace'"),
        ({"num_frames": 0}, "num_frames"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_options_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        datamodule(**options).dataset("train")


def test_unknown_split_is_refused():
    with pytest.raises(ValueError, match="unknown split 'holdout'"):
        dataset("holdout")


def test_tilted_scenes_render_with_the_ray_tracer():
    ds = SyntheticBokehDataset(
        *sources(),
        split="val",
        size=1,
        num_frames=1,
        height=16,
        width=16,
        renderer="raytrace",
        samples_per_side=9,
        scene={"tilt": 0.2, "object_c": (1.5, 5.0)},
    )
    r = ds.render_sample(0)
    assert r["bokeh"].shape == (1, 3, 16, 16) and r["bokeh"].abs().max() <= 1
    sample = ds[0]
    assert (sample["planes"][:, :-1, :2] != 0).any()
    # The batch's bokeh is the ray tracer's image of the sampled layers, in raw units, mapped to [-1, 1].
    direct = raytrace(
        sample["images"],
        sample["alphas"],
        sample["planes"],
        sample["k_raw"],
        sample["disp_focus_raw"],
        samples_per_side=9,
    )
    torch.testing.assert_close(r["bokeh"], direct.clamp(0, 1) * 2 - 1, rtol=0, atol=1e-6)
    # And it is blurred: K > 0 with planes off the focus changes the frame.
    assert (r["bokeh"] - r["aif"]).abs().amax() > 0.05


def test_unbuilt_source_configs_are_refused():
    config = {"_target_": "any2bokeh.data.ProceduralForegrounds", "num_clips": 2}
    with pytest.raises(TypeError, match="unbuilt config of any2bokeh.data.ProceduralForegrounds"):
        SyntheticBokehDataset(config, sources()[1], size=1)


def test_splits_differ_and_setup_twice_gives_the_same_samples():
    # imported here: another interpreter imports this module with only its folder on the path (see above)
    from tests.helpers.scene_sources import procedural

    dm = SyntheticBokehDataModule(
        *procedural(32, 32), num_frames=2, height=32, width=32, train_size=3, val_size=3, test_size=3
    )
    dm.setup()
    first = {split: dm.dataset(split)[1] for split in ("train", "val", "test")}
    dm.setup("fit")
    dm.setup()
    for split in ("train", "val", "test"):
        again = dm.dataset(split)[1]
        for name in first[split]:
            assert torch.equal(first[split][name], again[name]), (split, name)
    assert not torch.equal(first["train"]["images"], first["val"]["images"])
    assert not torch.equal(first["train"]["images"], first["test"]["images"])
    assert not torch.equal(first["val"]["images"], first["test"]["images"])
