"""Benchmark: accelerator memory of one network pass, measured on a GPU vs the graph's own lower bound.

Two figures for the shipped model (or ``--model``) on one network window (default 160 x 192 x 160,
what a 1 mm head needs; batch 1, float32):

- ``bound``: the least memory any schedule of the network's graph needs, computed from the
  graph alone (no device): the layers run in the model's order, each output is allocated when
  its layer runs and freed after its last consumer; the peak of the live outputs plus the
  weights. Fused kernels can only lower the activations of a layer pair, workspaces raise it.
- ``measured`` (with ``--device gpu`` on a GPU): the backend's own peak of device memory during
  one pass after a warm-up pass: TensorFlow's ``get_memory_info('GPU:0')['peak']`` (memory growth
  on, as the app sets it) or JAX's ``memory_stats()['peak_bytes_in_use']``
  (``XLA_PYTHON_CLIENT_PREALLOCATE=false``, as the package sets it). The CUDA context and cuDNN
  handles (hundreds of MiB per process) are outside both figures.

How many scans fit on one GPU at once is about (GPU memory) / (measured + context) per process.

Usage::

    python benchmarks/bench_gpu_memory.py                         # the bound only (any machine)
    python benchmarks/bench_gpu_memory.py --device gpu            # + measured, TensorFlow
    KERAS_BACKEND=jax python benchmarks/bench_gpu_memory.py --device gpu
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def graph_bound(model, window: tuple[int, int, int]) -> dict:
    """Peak bytes of live layer outputs over the model's layer order, and the weights' bytes."""
    import keras

    shapes: dict[str, tuple] = {}
    consumers: dict[str, int] = {layer.name: 0 for layer in model.layers}
    inputs_of: dict[str, list[str]] = {}
    for layer in model.layers:
        node = layer._inbound_nodes[0]
        names = [t._keras_history.operation.name for t in node.input_tensors]
        inputs_of[layer.name] = names
        for name in names:
            consumers[name] += 1
    nbytes: dict[str, int] = {}
    live: dict[str, int] = {}
    remaining = dict(consumers)
    peak = 0
    for layer in model.layers:
        names = inputs_of[layer.name]
        if not names:
            shape = (1, *window, int(layer.output.shape[-1]))
        else:
            specs = [keras.KerasTensor(shapes[n], dtype="float32") for n in names]
            out = layer.compute_output_spec(specs if len(specs) > 1 else specs[0])
            shape = tuple(int(s) for s in out.shape)
        shapes[layer.name] = shape
        nbytes[layer.name] = int(np.prod(shape)) * 4
        live[layer.name] = nbytes[layer.name]
        peak = max(peak, sum(live.values()))
        for name in names:
            remaining[name] -= 1
            if remaining[name] == 0:
                live.pop(name, None)
    weights = sum(int(np.prod(w.shape)) * 4 for w in model.weights)
    return {"activations_peak_bytes": peak, "weights_bytes": weights, "largest_output_bytes": max(nbytes.values()),
            "output_shape": list(shapes[model.layers[-1].name])}


def measured_peak(network, window: tuple[int, int, int]) -> dict:
    """Device peak bytes of one pass after a warm-up pass, from the backend's allocator."""
    import keras

    batch = np.random.default_rng(0).random((1, *window, 1), dtype=np.float32)
    network.predict(batch)  # warm-up: compilation, autotuning
    if keras.backend.backend() == "jax":
        import jax

        device = jax.devices("gpu")[0]
        start = device.memory_stats()["peak_bytes_in_use"]
        t0 = time.perf_counter()
        network.predict(batch)
        seconds = time.perf_counter() - t0
        stats = device.memory_stats()
        return {"backend": "jax", "peak_bytes": stats["peak_bytes_in_use"], "peak_before_bytes": start,
                "gpu_total_bytes": stats.get("bytes_limit"), "pass_seconds": seconds, "device": device.device_kind}
    import tensorflow as tf

    tf.config.experimental.reset_memory_stats("GPU:0")
    t0 = time.perf_counter()
    network.predict(batch)
    seconds = time.perf_counter() - t0
    info = tf.config.experimental.get_memory_info("GPU:0")
    details = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0])
    return {"backend": "tensorflow", "peak_bytes": info["peak"], "pass_seconds": seconds,
            "device": details.get("device_name", "GPU:0")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model file (default: the shipped model)")
    parser.add_argument("--window", type=int, nargs=3, default=(160, 192, 160))
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu", help="gpu: also measure on the GPU")
    args = parser.parse_args()
    from synthseg_bids.inference import Network
    from synthseg_bids.inference.runtime import default_model_path
    from synthseg_bids.network import load_model

    path = args.model or default_model_path()
    window = tuple(args.window)
    model, _ = load_model(path)
    result = {"window": list(window), "bound": graph_bound(model, window)}
    if args.device == "gpu":
        network = Network.from_file(path, device="gpu")
        result["measured"] = measured_peak(network, window)
        result["measured_over_bound"] = result["measured"]["peak_bytes"] / (
            result["bound"]["activations_peak_bytes"] + result["bound"]["weights_bytes"])
    print(json.dumps(result, indent=2))
    gib = 2**30
    bound = result["bound"]
    print(f"\nbound: activations {bound['activations_peak_bytes'] / gib:.2f} GiB + weights "
          f"{bound['weights_bytes'] / gib:.3f} GiB for a {'x'.join(map(str, window))} window")
    if "measured" in result:
        m = result["measured"]
        print(f"measured on {m['device']} ({m['backend']}): peak {m['peak_bytes'] / gib:.2f} GiB, "
              f"{m['pass_seconds']:.3f} s per pass; measured / bound = {result['measured_over_bound']:.2f}")


if __name__ == "__main__":
    main()
