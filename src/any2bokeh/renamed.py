"""The package's old module paths, kept importable after the layout moved them.

A run folder's `.hydra/config.yaml`, a pickled object in a checkpoint or an evaluation cache, or a
user's script may name a module by the path it had when it was written. Each old path below resolves
to the module that now holds the same code (the same module object: classes compare equal). New code
uses the new paths; this file only grows.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from types import ModuleType

# old package -> new package (their submodules follow)
RENAMED_PACKAGES = {
    "any2bokeh.modules": "any2bokeh.stages",
    "any2bokeh.render": "any2bokeh.optics",
    "any2bokeh.evaluating": "any2bokeh.evaluation",
}
# old module -> new module
RENAMED_MODULES = {
    "any2bokeh.configs": "any2bokeh.utils.hydra",
    "any2bokeh.evaluating.probes": "any2bokeh.stages.probes",
    # the metrics were `any2bokeh.evaluation.*` before that name went to the evaluation protocol
    **{
        f"any2bokeh.evaluation.{name}": f"any2bokeh.metrics.{name}"
        for name in ("base", "flow", "frechet", "functional", "i3d", "lpips", "video_metrics", "weights")
    },
}


def new_name(old: str) -> str | None:
    """The module path that replaced `old`, or None when `old` was never renamed."""
    if old in RENAMED_MODULES:
        return RENAMED_MODULES[old]
    for package, replacement in RENAMED_PACKAGES.items():
        if old == package or old.startswith(package + "."):
            return replacement + old[len(package) :]
    return None


class RenamedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """An old path imports its new module. Asked first: otherwise an old submodule path would be found
    through its aliased parent's `__path__` and run a second copy of the file under the old name."""

    def find_spec(self, fullname, path=None, target=None):
        if new_name(fullname) is None:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec) -> ModuleType:
        module = importlib.import_module(new_name(spec.name))
        # importlib now sets the old name's spec on it; exec_module gives its own back
        spec.loader_state = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # the code already ran under the new name
        module.__spec__ = module.__spec__.loader_state


def install() -> None:
    if not any(isinstance(finder, RenamedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, RenamedModuleFinder())
