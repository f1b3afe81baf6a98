import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from any2bokeh.data.seeding import bernoulli, choice, keyed_generator, randint, uniform, uniforms

DATA_DIR = Path(__file__).resolve().parents[2] / "src" / "any2bokeh" / "data"


def draw(*keys):
    return torch.rand(4, generator=keyed_generator(*keys))


def test_equal_keys_equal_streams_other_keys_other_streams():
    assert torch.equal(draw(0, "train", 3), draw(0, "train", 3))
    for other in [(1, "train", 3), (0, "val", 3), (0, "train", 4), (3, "train", 0), (0, "train", "3"), (0, "train")]:
        assert not torch.equal(draw(0, "train", 3), draw(*other)), other


def test_nearby_keys_decorrelate():
    draws = torch.stack([draw(0, "foreground", i) for i in range(200)])  # [200, 4]
    assert len({tuple(row.tolist()) for row in draws}) == 200
    # Consecutive indices are not correlated: first draws of neighbours look independent.
    first = draws[:, 0]
    correlation = torch.corrcoef(torch.stack([first[:-1], first[1:]]))[0, 1]
    assert abs(float(correlation)) < 0.25
    assert 0.4 < float(first.mean()) < 0.6


def test_streams_are_the_same_in_another_interpreter():
    code = "import torch; from any2bokeh.data.seeding import keyed_generator as g; print(torch.rand(4, generator=g(0, 'train', 3)).tolist())"
    env = {"PYTHONHASHSEED": "123", "PATH": ""}
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == str(draw(0, "train", 3).tolist())


@pytest.mark.parametrize("key", [1.5, None, True, (1, 2)])
def test_keys_must_be_ints_or_strings(key):
    with pytest.raises(TypeError, match="ints or strings"):
        keyed_generator(0, key)


def test_draw_helpers_keep_their_contracts():
    g = keyed_generator(5)
    floats = [uniform(g, 2.0, 3.0) for _ in range(500)]
    assert all(isinstance(x, float) and 2.0 <= x < 3.0 for x in floats)
    assert min(floats) < 2.1 and max(floats) > 2.9
    tensor = uniforms(g, -1.0, 1.0, (3, 4))
    assert tensor.shape == (3, 4) and tensor.dtype == torch.float32 and (-1 <= tensor).all() and (tensor < 1).all()
    assert uniforms(g, 0.0, 1.0, (2,), torch.float64).dtype == torch.float64
    # randint: high exclusive, every value of [low, high) reached.
    ints = [randint(g, 3, 6) for _ in range(300)]
    assert all(isinstance(i, int) for i in ints) and set(ints) == {3, 4, 5}
    with pytest.raises(ValueError, match="low < high"):
        randint(g, 2, 2)
    assert not any(bernoulli(g, 0.0) for _ in range(100)) and all(bernoulli(g, 1.0) for _ in range(100))
    assert 100 < sum(bernoulli(g, 0.3) for _ in range(500)) < 200
    picks = [choice(g, [0.0, 1.0, 3.0]) for _ in range(400)]
    assert 0 not in picks and 50 < picks.count(1) < 150


GLOBAL_RNG_CALLS = {
    "rand",
    "randn",
    "randint",
    "randperm",
    "rand_like",
    "randn_like",
    "randint_like",
    "normal",
    "multinomial",
    "bernoulli",
    "poisson",
    "uniform_",
    "normal_",
    "random_",
    "exponential_",
    "bernoulli_",
}


def test_data_code_draws_no_global_random_numbers():
    found = []
    for path in sorted(DATA_DIR.glob("*.py")):
        tree = ast.parse(path.read_text())
        # The seeding module's draw helpers take the generator as their first, required argument.
        seeded_helpers = {
            alias.asname or alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module == "any2bokeh.data.seeding"
            for alias in node.names
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Import) and any(a.name in ("random", "numpy.random") for a in node.names):
                found.append(f"{path.name}:{node.lineno} import")
            if isinstance(node, ast.ImportFrom) and node.module in ("random", "numpy.random"):
                found.append(f"{path.name}:{node.lineno} import")
            if isinstance(node, ast.Call):
                callee = ast.unparse(node.func)
                name = callee.rsplit(".", 1)[-1]
                if callee in seeded_helpers and node.args:
                    continue
                if name in GLOBAL_RNG_CALLS and not any(k.arg == "generator" for k in node.keywords):
                    found.append(f"{path.name}:{node.lineno} {callee}")
                if callee.startswith(("random.", "np.random.", "numpy.random.")):
                    found.append(f"{path.name}:{node.lineno} {callee}")
    assert not found, found
