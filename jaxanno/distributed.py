"""Spreading the (grid point x seed) lanes over every device of every host.

The lanes of a launch are independent, so they are sharded along one mesh axis, 'lanes',
over all devices (`jax.sharding.Mesh`); features and other shared inputs are replicated,
and `shard_map` runs the vmapped simulation on each device's lanes with no communication.
Several hosts join through JAX's own distributed runtime (`jax.distributed.initialize`),
from explicit flags or from what a cluster launcher sets (SLURM, TPU pods, or
JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID). Every process computes its
own lanes; results are gathered, and process 0 writes them.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

LANES = "lanes"
_CLUSTER_ENV = ("SLURM_JOB_ID", "TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS", "JAX_COORDINATOR_ADDRESS")


def _cluster_detected() -> bool:
    if os.environ.get("SLURM_JOB_ID") and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        return True
    return any(os.environ.get(k) for k in _CLUSTER_ENV[1:])


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    mode: str = "auto",
) -> bool:
    """Join the processes of a multi-host run; returns True when running distributed.

    Args:
      coordinator_address, num_processes, process_id: explicit settings (all three, as
        ``host:port``, count, rank); otherwise JAX reads the environment.
      mode: 'auto' (join when a cluster environment is detected or settings are given),
        'on' (always call `jax.distributed.initialize`) or 'off'.
    """
    explicit = coordinator_address is not None
    if mode == "off" or (mode == "auto" and not explicit and not _cluster_detected()):
        return False
    if os.environ.get("JAX_PLATFORMS", "").startswith("cpu") or not _has_accelerator():
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    kwargs = {}
    if explicit:
        kwargs = dict(coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id)
    jax.distributed.initialize(**kwargs)
    return jax.process_count() > 1


def _has_accelerator() -> bool:
    """Whether a GPU or TPU backend is installed (checked without starting one)."""
    try:
        import jax_plugins  # noqa: F401  (present with CUDA / TPU plugins)

        return True
    except ImportError:
        return False


def is_main() -> bool:
    return jax.process_index() == 0


def lane_mesh() -> Mesh:
    """A 1-D mesh over every device of every process."""
    return Mesh(np.asarray(jax.devices()), (LANES,))


def padded_lanes(num_lanes: int, mesh: Mesh) -> int:
    """Lanes rounded up to a multiple of the device count (extra lanes are dropped)."""
    n = mesh.size
    return -(-num_lanes // n) * n


def put(tree: Any, mesh: Mesh, sharded: bool) -> Any:
    """Place host (numpy) arrays as global arrays: split along lanes or replicated.

    Every process passes the full host arrays and contributes the shards it owns.
    """
    spec = P(LANES) if sharded else P()

    def one(x):
        x = np.asarray(x)
        sharding = NamedSharding(mesh, spec)
        return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])

    return jax.tree.map(one, tree)


def gather(tree: Any) -> Any:
    """Host copies of (possibly multi-process) global arrays."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    return multihost_utils.process_allgather(tree, tiled=True)


def lane_spec() -> P:
    """PartitionSpec of arrays split along their leading lane axis."""
    return P(LANES)


def replicated_spec() -> P:
    """PartitionSpec of arrays every device holds whole."""
    return P()


def barrier(name: str) -> None:
    """Wait until every process reaches this point (nothing to wait for with one process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)
