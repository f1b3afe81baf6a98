"""Checkpoints, configs and pickles written before the layout moved modules keep working."""

import pickle
import types

import hydra.utils
import pytest
import torch

from any2bokeh.inference.model_renderer import ModelRenderer
from any2bokeh.renamed import new_name
from any2bokeh.training import train
from tests.helpers.train_configs import tiny_config

# (old path, new path) of objects that configs, checkpoints and scripts named before the move
MOVED = [
    ("any2bokeh.modules.Stage1GeometryGuided", "any2bokeh.stages.Stage1GeometryGuided"),
    ("any2bokeh.modules.stage3.Stage3DecoderDetail", "any2bokeh.stages.stage3.Stage3DecoderDetail"),
    ("any2bokeh.render.raytrace", "any2bokeh.optics.raytrace"),
    ("any2bokeh.render.layers.render_layers", "any2bokeh.optics.layers.render_layers"),
    ("any2bokeh.evaluating.evaluate", "any2bokeh.evaluation.evaluate"),
    ("any2bokeh.evaluating.records.Job", "any2bokeh.evaluation.records.Job"),
    ("any2bokeh.evaluating.probes.conditioning_probes", "any2bokeh.stages.probes.conditioning_probes"),
    ("any2bokeh.evaluation.functional.psnr", "any2bokeh.metrics.functional.psnr"),
    ("any2bokeh.evaluation.video_metrics.PSNR", "any2bokeh.metrics.video_metrics.PSNR"),
    ("any2bokeh.configs.compose_train_config", "any2bokeh.utils.hydra.compose_train_config"),
]


@pytest.mark.parametrize("old, new", MOVED)
def test_an_old_path_is_the_new_object(old, new):
    assert hydra.utils.get_object(old) is hydra.utils.get_object(new)
    module, _, name = old.rpartition(".")
    # what a pickle written with the old path asks for
    assert pickle.loads(f"c{module}\n{name}\n.".encode()) is hydra.utils.get_object(new)


def test_old_paths_are_the_same_modules_not_second_copies():
    import any2bokeh.modules.stage1 as old
    import any2bokeh.stages.stage1 as new

    assert old is new and new.__spec__.name == "any2bokeh.stages.stage1"
    assert new_name("any2bokeh.stages") is None and new_name("any2bokeh.evaluation.run") is None
    with pytest.raises(ModuleNotFoundError):
        import any2bokeh.modules.no_such_module  # noqa: F401


class RecordingUnpickler(pickle.Unpickler):
    modules: set[str] = set()

    def find_class(self, module, name):
        RecordingUnpickler.modules.add(module)
        return super().find_class(module, name)


@pytest.mark.slow
def test_a_checkpoint_of_this_code_loads_by_every_route(tmp_path):
    run = tmp_path / "run"
    train(tiny_config(run))
    checkpoint = run / "checkpoints" / "last.ckpt"
    # it names no module of the package, so no later move can break it
    RecordingUnpickler.modules = set()
    recording = types.SimpleNamespace(Unpickler=RecordingUnpickler, load=pickle.load, __name__="pickle")
    torch.load(checkpoint, map_location="cpu", weights_only=False, pickle_module=recording)
    assert RecordingUnpickler.modules and not {m for m in RecordingUnpickler.modules if m.startswith("any2bokeh")}

    # as an old run's saved config would, the stage is named by its old path
    old_stage = ["module._target_=any2bokeh.modules.Stage1GeometryGuided"]
    _, objects = train(tiny_config(tmp_path / "init", f"init_from={checkpoint}", *old_stage))
    assert objects["trainer"].global_step == 2 and type(objects["model"]).__module__ == "any2bokeh.stages.stage1"
    _, objects = train(tiny_config(tmp_path / "resume", f"ckpt_path={checkpoint}", "trainer.max_steps=3", *old_stage))
    assert objects["trainer"].global_step == 3
    renderer = ModelRenderer.from_path(path=checkpoint, area=32 * 32)
    frames = torch.rand(2, 3, 32, 32)
    out = renderer(frames, torch.rand(2, 1, 32, 32), 0.5, 4.0)
    assert out.shape == frames.shape and torch.isfinite(out).all()
