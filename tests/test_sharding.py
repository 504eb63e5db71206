"""Sharding: mesh construction, logical-axis rules, and the train step over 8 (fake CPU)
devices giving the single-device result."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from jaxvid.sharding import make_mesh, param_logical_axes, spec_for

SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    from configs.models import get_config
    from jaxvid.models.temporal import TemporalConfig
    from jaxvid.pipelines.default import random_bundle
    from jaxvid.sharding import make_mesh, placer
    from jaxvid.training.optim import OptimConfig
    from jaxvid.training.tasks.svdiff import ObjectiveConfig, SVDiffTask
    from jaxvid.training.trainer import Trainer

    assert len(jax.devices()) == 8
    bundle = random_bundle(get_config("micro"))
    rng = np.random.default_rng(0)
    batch = {"video": rng.integers(0, 255, (8, 4, 16, 16, 3), dtype=np.uint8)}
    out = {}
    for name in sys.argv[1:]:
        shape = {"single": (1, 1, 1), "data": (8, 1, 1), "fsdp": (1, 8, 1), "data_fsdp": (2, 4, 1)}[name]
        devices = jax.devices()[:1] if name == "single" else jax.devices()
        mesh = make_mesh(shape, devices)
        task = SVDiffTask(bundle, temporal=TemporalConfig(memory_hw=(2, 2)), objective=ObjectiveConfig(clip_frames=2))
        tr = Trainer(task, optim=OptimConfig(learning_rate=1e-2, eps=1.0), total_steps=10, mesh=mesh)
        batch["ids"] = np.tile(np.asarray(task.uncond_ids), (8, 1))
        state, losses = tr.init(0), []
        for _ in range(2):
            state, m = tr.step(state, batch)
            losses.append(float(m["loss"]))
        leaves = jax.tree.leaves(state.params)
        sharded = sum(len({str(s.index) for s in a.addressable_shards}) > 1 for a in leaves)
        frozen_sharded = sum(len({str(s.index) for s in a.addressable_shards}) > 1 for a in jax.tree.leaves(tr.frozen))
        out[name] = {"losses": losses, "params": [np.asarray(a).ravel().tolist() for a in leaves],
                     "sharded_params": sharded, "sharded_frozen": frozen_sharded}
    print(json.dumps(out))
""")


def run_meshes(*names):
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    env = {**os.environ, "XLA_FLAGS": flags.strip(), "JAX_PLATFORMS": "cpu"}
    r = subprocess.run([sys.executable, "-c", SCRIPT, *names], capture_output=True, timeout=1200, env=env,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    return json.loads(r.stdout.decode().strip().splitlines()[-1])


def _same_result(ref, got):
    # Adam's eps is 1 here: with the usual 1e-8, parameters whose gradient is float noise (~1e-10)
    # take lr-sized steps of random sign, which no two summation orders agree on. Measured (2x4 vs
    # one device): losses 1.2e-7 apart, parameters 1.9e-10; margins of ~100x.
    np.testing.assert_allclose(got["losses"], ref["losses"], rtol=1e-5)
    for a, b in zip(got["params"], ref["params"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_data_x_fsdp_2x4_step_equals_single_device():
    out = run_meshes("single", "data_fsdp")
    _same_result(out["single"], out["data_fsdp"])
    assert out["single"]["sharded_params"] == 0
    assert out["data_fsdp"]["sharded_params"] > 0 and out["data_fsdp"]["sharded_frozen"] > 0  # really split


@pytest.mark.slow
def test_pure_data_and_pure_fsdp_steps_equal_single_device():
    out = run_meshes("single", "data", "fsdp")
    _same_result(out["single"], out["data"])
    _same_result(out["single"], out["fsdp"])
    assert out["data"]["sharded_params"] == 0 and out["fsdp"]["sharded_params"] > 0


def test_logical_rules_replicate_what_does_not_divide():
    mesh = make_mesh((1, 1, 1), jax.devices()[:1])
    assert spec_for((32, 64), ("embed", "mlp"), mesh) == jax.sharding.PartitionSpec(None, None)
    fake = type("M", (), {"shape": {"data": 2, "fsdp": 4, "tensor": 1}})()
    assert spec_for((32, 64), ("embed", "mlp"), fake) == jax.sharding.PartitionSpec("fsdp", None)
    assert spec_for((6, 64), ("embed", "mlp"), fake) == jax.sharding.PartitionSpec(None, None)  # 6 % 4 != 0
    assert spec_for((8, 3), ("batch", None), fake) == jax.sharding.PartitionSpec(("data", "fsdp"), None)
    assert param_logical_axes(["conv_in", "kernel"], 4) == (None, None, "embed", "mlp")
    assert param_logical_axes(["norm", "scale"], 1) == (None,)


def test_mesh_shapes_are_checked():
    n = len(jax.devices())
    assert make_mesh({"data": -1}).shape["data"] == n
    with pytest.raises(ValueError, match="needs"):
        make_mesh((n + 1, 1, 1))
    with pytest.raises(ValueError, match="one may be -1"):
        make_mesh((-1, -1, 1))
