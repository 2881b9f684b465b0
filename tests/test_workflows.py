"""The shipped workflows (UI format, as users drag them in): links and types agree, every widget value of
our nodes is valid for its input, and workflow (1)'s EMO part runs on the tiny model.

Core nodes' sockets below are from ComfyUI 0.3.64's /object_info (LoadAudio from its source: it is absent
from /object_info without torchaudio).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from .test_nodes import astronaut, load_pack, models_dir, run_node, speech, widgets  # noqa: F401 (fixture)

WORKFLOWS = sorted((Path(__file__).resolve().parents[1] / "workflows").glob("*.json"))
CORE = {  # type -> ({input: type}, [output types])
    "LoadImage": ({}, ["IMAGE", "MASK"]),
    "LoadAudio": ({}, ["AUDIO"]),
    "CheckpointLoaderSimple": ({}, ["MODEL", "CLIP", "VAE"]),
    "CLIPTextEncode": ({"clip": "CLIP"}, ["CONDITIONING"]),
    "EmptyLatentImage": ({}, ["LATENT"]),
    "KSampler": ({"model": "MODEL", "positive": "CONDITIONING", "negative": "CONDITIONING",
                  "latent_image": "LATENT"}, ["LATENT"]),
    "VAEDecode": ({"samples": "LATENT", "vae": "VAE"}, ["IMAGE"]),
    "PreviewImage": ({"images": "IMAGE"}, []),
    "CreateVideo": ({"images": "IMAGE", "fps": "FLOAT", "audio": "AUDIO"}, ["VIDEO"]),
    "SaveVideo": ({"video": "VIDEO"}, []),
}
FRONTEND_ONLY = ("Note", "MarkdownNote")
CONTROL_VALUES = ("fixed", "increment", "decrement", "randomize")


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def signature(node_type: str) -> tuple[dict, list]:
    """({socket input: type}, [output types]) of a node type, ours or core."""
    pack = load_pack()
    if node_type in pack.NODE_CLASS_MAPPINGS:
        cls = pack.NODE_CLASS_MAPPINGS[node_type]
        spec = cls.INPUT_TYPES()
        inputs = {n: s[0] for n, s in [*spec["required"].items(), *spec.get("optional", {}).items()]}
        return inputs, list(cls.RETURN_TYPES)
    return CORE[node_type]


def named_widget_values(node: dict) -> dict:
    """widgets_values of one of our nodes -> {input name: value}, skipping control_after_generate values."""
    cls = load_pack().NODE_CLASS_MAPPINGS[node["type"]]
    values, named = list(node["widgets_values"]), {}
    for name, spec in widgets(cls):
        assert values, f"node {node['id']} ({node['type']}): no value for widget {name}"
        named[name] = values.pop(0)
        if spec[0] == "INT" and (spec[1].get("control_after_generate") or name in ("seed", "noise_seed")):
            assert values and values.pop(0) in CONTROL_VALUES, f"node {node['id']}: {name} needs a control value"
    assert not values, f"node {node['id']} ({node['type']}): {len(values)} widget values too many"
    return named


@pytest.fixture(scope="module")
def workflow_models(models_dir):  # noqa: F811
    """The models folder with every checkpoint name the workflows use (links to the tiny checkpoint)."""
    for path in WORKFLOWS:
        for node in load(path)["nodes"]:
            if node["type"] == "EMOLoadModel" and node["widgets_values"][0] != "(assemble from parts)":
                target = models_dir / "emo" / node["widgets_values"][0]
                if not target.exists():
                    os.symlink(models_dir / "emo" / "tiny", target, target_is_directory=True)
    return models_dir


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_links_join_outputs_to_inputs_of_the_same_type(path, models_dir):  # noqa: F811
    workflow = load(path)
    assert workflow["version"] == 0.4
    nodes = {n["id"]: n for n in workflow["nodes"]}
    assert workflow["last_node_id"] == max(nodes) and workflow["last_link_id"] == max(link[0] for link in workflow["links"])
    for link_id, src, src_slot, dst, dst_slot, kind in workflow["links"]:
        output, target = nodes[src]["outputs"][src_slot], nodes[dst]["inputs"][dst_slot]
        assert link_id in output["links"] and target["link"] == link_id
        assert output["type"] == target["type"] == kind
        inputs, outputs = signature(nodes[dst]["type"])
        assert inputs.get(target["name"]) == kind, f"{nodes[dst]['type']}.{target['name']} does not take {kind}"
        assert signature(nodes[src]["type"])[1][src_slot] == kind
    linked = {link[0] for link in workflow["links"]}
    for node in workflow["nodes"]:
        if node["type"] in FRONTEND_ONLY:
            continue
        for socket in node["inputs"]:
            assert socket["link"] is None or socket["link"] in linked
            if socket.get("shape") != 7 and "widget" not in socket:
                assert socket["link"] is not None, f"{node['type']}.{socket['name']} is required but unlinked"
        assert [o["type"] for o in node["outputs"]] == signature(node["type"])[1]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_our_widget_values_are_valid_for_their_inputs(path, workflow_models):
    pack = load_pack()
    ours = [n for n in load(path)["nodes"] if n["type"] in pack.NODE_CLASS_MAPPINGS]
    assert {"EMOLoadModel", "EMOEncodeReference", "EMOAudioFeatures"} <= {n["type"] for n in ours}
    for node in ours:
        specs = dict(widgets(pack.NODE_CLASS_MAPPINGS[node["type"]]))
        for name, value in named_widget_values(node).items():
            choices, options = specs[name][0], specs[name][1]
            where = f"{path.name} node {node['id']} {node['type']}.{name} = {value!r}"
            if isinstance(choices, list):
                assert value in choices, where
            elif choices in ("INT", "FLOAT"):
                assert isinstance(value, (int, float)) and options["min"] <= value <= options["max"], where
                assert choices == "FLOAT" or isinstance(value, int), where
            else:
                assert isinstance(value, str), where


def execute(workflow: dict, outputs: dict, checkpoint: str = "tiny", overrides: dict | None = None) -> None:
    """Run a UI workflow's nodes in order: ours through NODE_CLASS_MAPPINGS (EMOLoadModel loading
    ``checkpoint``, widgets of a node type replaced by ``overrides[type]``), LoadImage/LoadAudio replaced
    by a generated portrait and speech clip, CreateVideo's inputs recorded, other core nodes skipped."""
    nodes = sorted((n for n in workflow["nodes"] if n["type"] not in FRONTEND_ONLY), key=lambda n: n["order"])
    links = {link[0]: (link[1], link[2]) for link in workflow["links"]}
    pack = load_pack()
    for node in nodes:
        linked = {s["name"]: outputs[links[s["link"]][0]][links[s["link"]][1]]
                  for s in node["inputs"] if s["link"] is not None}
        if node["type"] == "LoadImage":
            outputs[node["id"]] = (astronaut(), None)
        elif node["type"] == "LoadAudio":
            outputs[node["id"]] = (speech(0.2),)
        elif node["type"] in pack.NODE_CLASS_MAPPINGS:
            values = named_widget_values(node)
            if node["type"] == "EMOLoadModel":
                values["checkpoint"] = checkpoint
            values.update((overrides or {}).get(node["type"], {}))
            outputs[node["id"]] = run_node(node["type"], **{**values, **linked})
        elif node["type"] == "CreateVideo":
            outputs[node["id"]] = (linked,)


def test_portrait_workflow_runs_on_the_tiny_model(workflow_models):
    workflow = load(next(p for p in WORKFLOWS if p.name == "emo_portrait_to_talking_video.json"))
    outputs = {}
    execute(workflow, outputs)
    create = next(n for n in workflow["nodes"] if n["type"] == "CreateVideo")
    (video,) = outputs[create["id"]]
    features = next(n for n in workflow["nodes"] if n["type"] == "EMOAudioFeatures")
    frames, fps = outputs[features["id"]][2:]
    assert video["images"].shape == (frames, 64, 64, 3) and frames == 5
    assert video["fps"] == fps == 25.0 and video["audio"]["waveform"].shape == (1, 2, 8820)


def test_echomimic_workflow_runs_on_a_small_echomimic_release(workflow_models):
    from .echomimic_files import small_echomimic_config, write_echomimic_release

    write_echomimic_release(workflow_models / "emo" / "echomimic-small", small_echomimic_config(layers_per_block=1))
    workflow = load(next(p for p in WORKFLOWS if p.name == "echomimic_portrait_to_talking_video.json"))
    outputs = {}
    execute(workflow, outputs, checkpoint="echomimic-small", overrides={"EMOSampler": {"steps": 2}})
    (video,) = outputs[next(n for n in workflow["nodes"] if n["type"] == "CreateVideo")["id"]]
    frames, fps = outputs[next(n for n in workflow["nodes"] if n["type"] == "EMOAudioFeatures")["id"]][2:]
    assert fps == 24.0 and video["fps"] == fps and video["images"].shape == (frames, 64, 64, 3) and frames >= 5
    assert video["audio"]["waveform"].shape == (1, 2, 8820)
