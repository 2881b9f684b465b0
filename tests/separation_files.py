"""Tiny MDX-Net ONNX files in the real layout, and the UVR ``model_data.json`` that describes them.

Real MDX-Net vocal models (UVR's ``Kim_Vocal_2.onnx``) take ``input`` and give ``output``, both
``(batch, 4, dim_f, dim_t)`` float32; these are the same graphs' interface with a tiny body.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

TINY = {"n_fft": 2048, "dim_f": 64, "dim_t": 16}  # hop 1024 as every MDX-Net: 15360-sample segments


def write_mdx_onnx(path: str | Path, dim_f: int = TINY["dim_f"], dim_t: int = TINY["dim_t"], body: str = "gain",
                   gain: float = 0.5, seed: int = 0) -> Path:
    """An MDX-Net-shaped ONNX model: ``body="gain"`` multiplies the spectrogram by ``gain``;
    ``"random"`` is a 1x1 convolution over the 4 channels with random weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    shape = ["batch", 4, dim_f, dim_t]
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, shape)
    if body == "gain":
        weights = [numpy_helper.from_array(np.array(gain, np.float32), "gain")]
        nodes = [helper.make_node("Mul", ["input", "gain"], ["output"])]
    elif body == "random":
        rng = np.random.default_rng(seed)
        weights = [numpy_helper.from_array(rng.normal(0, 0.5, (4, 4, 1, 1)).astype(np.float32), "w"),
                   numpy_helper.from_array(rng.normal(0, 0.01, 4).astype(np.float32), "b")]
        nodes = [helper.make_node("Conv", ["input", "w", "b"], ["output"])]
    else:
        raise ValueError(f"body: {body!r}; expected 'gain' or 'random'")
    graph = helper.make_graph(nodes, "mdx_net", [x], [y], initializer=weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def write_model_data(model: str | Path, n_fft: int = TINY["n_fft"], dim_f: int = TINY["dim_f"],
                     dim_t: int = TINY["dim_t"], compensate: float = 1.0, primary_stem: str = "Vocals",
                     name: str = "mdx_model_data.json") -> Path:
    """UVR's ``model_data.json`` beside ``model`` with its entry (keyed by the UVR hash), as Hallo ships it."""
    from emo_models.vocals.mdx import uvr_hash

    model = Path(model)
    entry = {"compensate": compensate, "mdx_dim_f_set": dim_f, "mdx_dim_t_set": int(np.log2(dim_t)),
             "mdx_n_fft_scale_set": n_fft, "primary_stem": primary_stem}
    data_file = model.parent / name
    table = json.loads(data_file.read_text()) if data_file.is_file() else {}
    table[uvr_hash(model)] = entry
    data_file.write_text(json.dumps(table, indent=1))
    return data_file
