"""Tiny ONNX stand-ins for Hallo's face-analysis files, with the real files' interfaces.

- SCRFD (``scrfd_10g_bnkps.onnx``, byte-identical to InsightFace's ``det_10g.onnx``): input ``input.1``
  (1, 3, ?, ?); 9 outputs ``448 471 494`` (scores, (N, 1)), ``451 474 497`` (box distances, (N, 4)),
  ``454 477 500`` (keypoint offsets, (N, 10)) for strides 8, 16, 32, N = (H/s)·(W/s)·2 anchors, rows
  ordered (row, column, anchor) as the head's NHWC reshape gives them.
- ArcFace (``glintr100.onnx``): input ``input.1`` (None, 3, 112, 112), one (None, 512) output (its name
  here is a stand-in; our code never reads names, only the session's).
Weights are small and random (seeded); :func:`write_scrfd_constant` instead outputs fixed predictions,
so decoding can be checked against closed forms.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SCORE_NAMES, BOX_NAMES, KPS_NAMES = ("448", "471", "494"), ("451", "474", "497"), ("454", "477", "500")
STRIDES = (8, 16, 32)


def _save(graph, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="emo-comfy-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def _scrfd_io():
    image = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, "?", "?"])
    outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [f"n{name}", width])
               for names, width in ((SCORE_NAMES, 1), (BOX_NAMES, 4), (KPS_NAMES, 10)) for name in names]
    return image, outputs


def write_scrfd(path, seed: int = 0, score_bias: float = -3.0, width: int = 8) -> Path:
    """Random-weight SCRFD: strided convs to strides 8/16/32, 1x1 heads (2 anchors), NHWC reshapes.

    ``score_bias`` sets how many anchors pass 0.5 (very negative: none, so no face is ever found).
    """
    rng = np.random.default_rng(seed)
    inits, nodes = [], []

    def weight(name, shape, std=0.1, bias=0.0):
        inits.append(numpy_helper.from_array((rng.standard_normal(shape) * std).astype(np.float32), name))
        inits.append(numpy_helper.from_array(np.full(shape[0], bias, np.float32), name + "_b"))
        return [name, name + "_b"]

    nodes.append(helper.make_node("Conv", ["input.1", *weight("c8", (width, 3, 8, 8), 0.05)], ["p8"], strides=[8, 8]))
    nodes.append(helper.make_node("Relu", ["p8"], ["f8"]))
    for low, high in ((8, 16), (16, 32)):
        nodes.append(helper.make_node("Conv", [f"f{low}", *weight(f"c{high}", (width, width, 2, 2))], [f"p{high}"],
                                      strides=[2, 2]))
        nodes.append(helper.make_node("Relu", [f"p{high}"], [f"f{high}"]))
    for k, stride in enumerate(STRIDES):
        for names, per_anchor in ((SCORE_NAMES, 1), (BOX_NAMES, 4), (KPS_NAMES, 10)):
            head, out = f"h{per_anchor}_{stride}", names[k]
            bias = score_bias if per_anchor == 1 else 1.0
            nodes.append(helper.make_node("Conv", [f"f{stride}", *weight(head, (2 * per_anchor, width, 1, 1), 0.5, bias)],
                                          [head + "_c"]))
            raw = head + "_c"
            if per_anchor == 1:
                nodes.append(helper.make_node("Sigmoid", [raw], [head + "_s"]))
                raw = head + "_s"
            inits.append(numpy_helper.from_array(np.array([-1, per_anchor], np.int64), head + "_shape"))
            nodes.append(helper.make_node("Transpose", [raw], [head + "_t"], perm=[0, 2, 3, 1]))
            nodes.append(helper.make_node("Reshape", [head + "_t", head + "_shape"], [out]))
    image, outputs = _scrfd_io()
    return _save(helper.make_graph(nodes, "scrfd", [image], outputs, inits), path)


def constant_predictions(detections, size: tuple[int, int] = (640, 640)):
    """Raw SCRFD outputs (9 arrays) for a ``size`` = (w, h) input holding exactly ``detections``:
    dicts with stride, row, col, anchor, score, box (4 distances in strides), kps (10 offsets in strides)."""
    width, height = size
    outs = {}
    for stride in STRIDES:
        rows = (height // stride) * (width // stride) * 2
        outs[stride] = [np.zeros((rows, 1), np.float32), np.zeros((rows, 4), np.float32),
                        np.zeros((rows, 10), np.float32)]
    for d in detections:
        index = (d["row"] * (width // d["stride"]) + d["col"]) * 2 + d["anchor"]
        scores, boxes, kps = outs[d["stride"]]
        scores[index, 0] = d["score"]
        boxes[index] = d["box"]
        kps[index] = d["kps"]
    return [outs[s][part] for part in range(3) for s in STRIDES]


def write_scrfd_constant(path, detections, size: tuple[int, int] = (640, 640)) -> Path:
    """SCRFD-interfaced file whose outputs are :func:`constant_predictions` whatever the image."""
    names = [*SCORE_NAMES, *BOX_NAMES, *KPS_NAMES]
    nodes = [helper.make_node("Constant", [], [name], value=numpy_helper.from_array(array, name + "_v"))
             for name, array in zip(names, constant_predictions(detections, size))]
    image, outputs = _scrfd_io()
    return _save(helper.make_graph(nodes, "scrfd_constant", [image], outputs), path)


def write_arcface(path, seed: int = 0, dim: int = 512, size: int = 112) -> Path:
    """Random-weight ArcFace stand-in: 8x8 strided conv, flatten (position-sensitive), linear to ``dim``."""
    rng = np.random.default_rng(seed)
    cells = size // 8
    inits = [
        numpy_helper.from_array((rng.standard_normal((8, 3, 8, 8)) * 0.1).astype(np.float32), "w"),
        numpy_helper.from_array((rng.standard_normal((8 * cells * cells, dim)) * 0.1).astype(np.float32), "fc"),
    ]
    nodes = [
        helper.make_node("Conv", ["input.1", "w"], ["c"], strides=[8, 8]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Flatten", ["r"], ["flat"]),
        helper.make_node("MatMul", ["flat", "fc"], ["1333"]),
    ]
    image = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["None", 3, size, size])
    output = helper.make_tensor_value_info("1333", TensorProto.FLOAT, ["None", dim])
    return _save(helper.make_graph(nodes, "arcface", [image], [output], inits), path)


def write_hallo_face_analysis(root, detector=None, landmarker: bool = True) -> Path:
    """Hallo's release layout ``root/face_analysis/models/`` with the two .onnx files (detector: a
    random SCRFD unless ``detector`` is given as a writer ``f(path)``), an optional placeholder .task
    file and the unused files' names. Returns the models folder."""
    folder = Path(root) / "face_analysis" / "models"
    (detector or write_scrfd)(folder / "scrfd_10g_bnkps.onnx")
    write_arcface(folder / "glintr100.onnx")
    for unused in ("1k3d68.onnx", "2d106det.onnx", "genderage.onnx"):
        (folder / unused).write_bytes(b"not read")
    if landmarker:
        (folder / "face_landmarker_v2_with_blendshapes.task").write_bytes(b"PK placeholder")
    return folder
