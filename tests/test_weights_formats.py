"""Weight loading, specified format by format: tiny random models written in each real on-disk
layout load back to exactly the tensors they were written from; foreign and broken files are
refused with a message that names the file and what was expected."""

from __future__ import annotations

import pytest
import torch

from emo_models.atomic_output import OutputError
from emo_models.config import full_config, tiny_config
from emo_models.weights import animatediff, native, sd15, wav2vec2
from emo_models.weights.inspect import describe
from emo_models.weights.safe_load import (
    PLAIN_TENSORS_ONLY,
    LoadReport,
    WeightsError,
    check_state_dict,
    load_component,
    read_state_dict,
)
from tests import weight_files as wf

CONFIG = tiny_config()


class NotATensor:
    """A custom class: a pickle holding one must be refused by weights_only loading."""


def assert_same_tensors(loaded: dict, expected: dict) -> None:
    assert sorted(loaded) == sorted(expected)
    for key, value in expected.items():
        assert loaded[key].dtype == value.dtype and torch.equal(loaded[key], value), key


def truncate(path, keep: float = 0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


# --- readers and checks ------------------------------------------------------------------------

def test_read_state_dict_unwraps_state_dict_and_module_nesting(tmp_path):
    tensors = {"a.weight": torch.randn(2, 3)}
    torch.save({"module": tensors}, tmp_path / "deepspeed.pt")
    torch.save({"state_dict": tensors, "global_step": 7}, tmp_path / "lightning.ckpt")
    assert_same_tensors(read_state_dict(tmp_path / "deepspeed.pt"), tensors)
    assert_same_tensors(read_state_dict(tmp_path / "lightning.ckpt"), tensors)


def test_unreadable_inputs_are_refused_with_the_file_named(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    torch.save({"w": torch.zeros(1), "step": 5}, tmp_path / "mixed.pth")
    cases = {tmp_path / "absent.safetensors": "no such file", tmp_path: "is a folder",
             tmp_path / "notes.txt": "unknown extension '.txt'", tmp_path / "mixed.pth": r"non-tensor values: step \(int\)"}
    for path, message in cases.items():
        with pytest.raises(WeightsError, match=message) as err:
            read_state_dict(path)
        assert str(path) in str(err.value)


def test_pickle_with_a_custom_object_is_refused(tmp_path):
    torch.save({"w": torch.zeros(1), "extra": NotATensor()}, tmp_path / "evil.ckpt")
    with pytest.raises(WeightsError, match=r"NotATensor.*" + PLAIN_TENSORS_ONLY.replace("(", r"\(").replace(")", r"\)")):
        read_state_dict(tmp_path / "evil.ckpt")


def test_truncated_files_are_refused(tmp_path):
    wf.write_sd15_single_file(tmp_path / "sd.safetensors", CONFIG)
    wf.write_animatediff_motion_module(tmp_path / "mm.ckpt", CONFIG, fmt="ckpt")
    for name in ("sd.safetensors", "mm.ckpt"):
        with pytest.raises(WeightsError, match=r"truncated or corrupt"):
            read_state_dict(truncate(tmp_path / name))


def test_check_refuses_foreign_keys_wrong_shapes_and_unallowed_missing_keys():
    expected = {"a.weight": (2, 2), "a.bias": (2,), "b.weight": (3,)}
    with pytest.raises(WeightsError, match=r"f.bin holds no toy weights \(1 keys, none match; first keys: x\)"):
        check_state_dict(expected, {"x": torch.zeros(1)}, "toy", "f.bin")
    wrong = {"a.weight": torch.zeros(2, 3), "a.bias": torch.zeros(2), "b.weight": torch.zeros(3)}
    with pytest.raises(WeightsError, match=r"a\.weight: file \(2, 3\) vs model \(2, 2\)"):
        check_state_dict(expected, wrong, "toy", "f.bin")
    partial = {"a.weight": torch.zeros(2, 2), "a.bias": torch.zeros(2), "c": torch.zeros(1)}
    with pytest.raises(WeightsError, match=r"lacks 1 toy weights: b\.weight"):
        check_state_dict(expected, partial, "toy", "f.bin")
    report = check_state_dict(expected, partial, "toy", "f.bin", allow_missing=lambda k: k.startswith("b."))
    assert (report.loaded, report.missing, report.unexpected) == (2, ["b.weight"], ["c"])


def test_load_component_loads_and_reports_by_component():
    module = torch.nn.Linear(3, 2)
    weights = {"weight": torch.randn(2, 3), "bias": torch.randn(2), "stray": torch.zeros(1)}
    report = load_component(module, weights, "backbone", "x.safetensors")
    assert torch.equal(module.weight, weights["weight"]) and torch.equal(module.bias, weights["bias"])
    assert str(report) == "backbone: 2 loaded, 0 missing, 1 unexpected: unexpected stray"
    many = LoadReport("vae", missing=[f"k{i}" for i in range(9)], loaded=1)
    assert str(many) == "vae: 1 loaded, 9 missing, 0 unexpected: missing k0, k1, k2, k3, k4 … (+4 more)"


# --- SD-1.5 UNet and VAE -------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt"])
def test_sd15_single_file_gives_the_unet_and_vae_it_was_written_from(tmp_path, suffix):
    written = wf.write_sd15_single_file(tmp_path / f"v1-5-pruned-emaonly{suffix}", CONFIG)
    path = tmp_path / f"v1-5-pruned-emaonly{suffix}"
    assert_same_tensors(sd15.load_unet_state_dict(path, CONFIG.unet), written["unet"])
    assert_same_tensors(sd15.load_vae_state_dict(path, CONFIG.vae), written["vae"])


def test_sd15_single_file_with_ema_weights_gives_the_ema_unet(tmp_path):
    written = wf.write_sd15_single_file(tmp_path / "v1-5-pruned.ckpt", CONFIG, ema=True)
    assert_same_tensors(sd15.load_unet_state_dict(tmp_path / "v1-5-pruned.ckpt", CONFIG.unet), written["unet"])


def test_bare_ldm_and_diffusers_unet_files_load(tmp_path):
    unet = wf.state_dict_copy(wf.tiny_unet(CONFIG))
    wf.save_weights(tmp_path / "ldm_unet.safetensors", wf.unet_to_ldm(unet, CONFIG.unet))
    wf.save_weights(tmp_path / "diffusers_unet.safetensors", unet)
    for name in ("ldm_unet.safetensors", "diffusers_unet.safetensors"):
        assert_same_tensors(sd15.load_unet_state_dict(tmp_path / name, CONFIG.unet), unet)


def test_diffusers_folders_load_from_the_pipeline_or_the_model_folder(tmp_path):
    written = wf.write_diffusers_pipeline_folder(tmp_path / "sd15", CONFIG)
    for path in (tmp_path / "sd15", tmp_path / "sd15" / "unet"):
        assert_same_tensors(sd15.load_unet_state_dict(path, CONFIG.unet), written["unet"])
    for path in (tmp_path / "sd15", tmp_path / "sd15" / "vae"):
        assert_same_tensors(sd15.load_vae_state_dict(path, CONFIG.vae), written["vae"])
    unet_bin = wf.write_diffusers_unet_folder(tmp_path / "unet_bin", CONFIG, safe_serialization=False)
    assert_same_tensors(sd15.load_unet_state_dict(tmp_path / "unet_bin", CONFIG.unet), unet_bin)
    with pytest.raises(WeightsError, match=r"no unet weights found; expected .*unet/diffusion_pytorch_model"):
        sd15.load_unet_state_dict(tmp_path, CONFIG.unet)


@pytest.mark.parametrize("layout", ["ldm", "diffusers"])
def test_standalone_vae_files_load(tmp_path, layout):
    written = wf.write_vae_single_file(tmp_path / "vae-ft-mse.safetensors", CONFIG, layout=layout)
    assert_same_tensors(sd15.load_vae_state_dict(tmp_path / "vae-ft-mse.safetensors", CONFIG.vae), written)


def test_legacy_diffusers_vae_attention_names_are_renamed(tmp_path):
    vae = wf.state_dict_copy(wf.tiny_vae(CONFIG))
    legacy = {k.replace(".to_q.", ".query.").replace(".to_out.0.", ".proj_attn."): v for k, v in vae.items()}
    wf.save_weights(tmp_path / "old_vae.bin", legacy)
    assert_same_tensors(sd15.load_vae_state_dict(tmp_path / "old_vae.bin", CONFIG.vae), vae)


def test_ldm_layout_of_the_full_sd15_size_round_trips_through_diffusers_converter():
    config = full_config()
    unet = {k: torch.empty(s, device="meta") for k, s in sd15.unet_shapes(config.unet).items()}
    ldm = {sd15.LDM_UNET_PREFIX + k: v for k, v in wf.unet_to_ldm(unet, config.unet).items()}
    assert "model.diffusion_model.output_blocks.11.0.skip_connection.weight" in ldm  # diffusers' SD-1 marker
    assert "model.diffusion_model.output_blocks.8.2.conv.weight" in ldm and len(ldm) == 686
    back = sd15.convert_unet_state_dict(ldm, config.unet)
    assert {k: v.shape for k, v in back.items()} == sd15.unet_shapes(config.unet)
    vae = {k: torch.empty(s, device="meta") for k, s in sd15.vae_shapes(config.vae).items()}
    ldm_vae = wf.vae_to_ldm(vae, config.vae)
    assert "decoder.up.3.upsample.conv.weight" in ldm_vae and ldm_vae["encoder.mid.attn_1.q.weight"].ndim == 4
    assert {k: v.shape for k, v in sd15.convert_vae_state_dict(ldm_vae, config.vae).items()} == sd15.vae_shapes(config.vae)


def test_foreign_checkpoints_are_refused_by_name(tmp_path):
    wf.save_weights(tmp_path / "lora.safetensors", {"lora_unet_down.alpha": torch.zeros(1), "lora_te.up": torch.zeros(2)})
    with pytest.raises(WeightsError, match=r"lora.safetensors holds no unet weights \(2 keys, none match"):
        sd15.load_unet_state_dict(tmp_path / "lora.safetensors", CONFIG.unet)
    with pytest.raises(WeightsError, match=r"holds no vae weights"):
        sd15.load_vae_state_dict(tmp_path / "lora.safetensors", CONFIG.vae)
    sdxl = {"conditioner.embedders.1.model.ln_final.weight": torch.zeros(4),
            "model.diffusion_model.label_emb.0.0.weight": torch.zeros(4, 4)}
    wf.save_weights(tmp_path / "sd_xl_base_1.0.safetensors", sdxl)
    with pytest.raises(WeightsError, match=r"looks like an SDXL checkpoint; EMO builds on SD-1.5"):
        sd15.load_unet_state_dict(tmp_path / "sd_xl_base_1.0.safetensors", CONFIG.unet)


def test_a_checkpoint_of_another_size_is_refused_naming_keys_and_shapes(tmp_path):
    wf.write_sd15_single_file(tmp_path / "sd.safetensors", CONFIG)
    wider = dict(CONFIG.unet, block_out_channels=(64, 64))
    with pytest.raises(WeightsError, match=r"conv_in\.weight: file \(32, 4, 3, 3\) vs model \(64, 4, 3, 3\)"):
        sd15.load_unet_state_dict(tmp_path / "sd.safetensors", wider)


def test_loaded_unet_fills_a_stock_diffusers_unet_with_nothing_missing(tmp_path):
    from diffusers import UNet2DConditionModel

    written = wf.write_sd15_single_file(tmp_path / "sd.safetensors", CONFIG)
    unet = UNet2DConditionModel(**CONFIG.unet)
    report = load_component(unet, sd15.load_unet_state_dict(tmp_path / "sd.safetensors", CONFIG.unet), "backbone", "sd")
    assert (report.loaded, report.missing, report.unexpected) == (len(written["unet"]), [], [])
    assert_same_tensors(unet.state_dict(), written["unet"])


# --- AnimateDiff -------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["ckpt", "safetensors"])
def test_animatediff_motion_module_loads_with_pos_encoder_dropped(tmp_path, fmt):
    written = wf.write_animatediff_motion_module(tmp_path / "mm_sd_v15_v2", CONFIG, fmt=fmt)
    loaded = animatediff.load_motion_module_state_dict(tmp_path / f"mm_sd_v15_v2.{fmt}", unet_config=CONFIG.unet)
    assert_same_tensors(loaded, {k: v for k, v in written.items() if "pos_encoder" not in k})
    modules = {k.split(".temporal_transformer.")[0] for k in written}
    assert len(modules) == 2 * 1 + 1 + 2 * 2 and len(written) == 28 * len(modules)
    assert written["up_blocks.0.motion_modules.1.temporal_transformer.transformer_blocks.0.ff.net.0.proj.weight"].shape == (512, 64)


def test_animatediff_layout_matches_diffusers_motion_adapter_and_its_files_load(tmp_path):
    from diffusers import MotionAdapter
    from diffusers.loaders.single_file_utils import convert_animatediff_checkpoint_to_diffusers

    adapter = MotionAdapter(block_out_channels=CONFIG.unet["block_out_channels"], motion_layers_per_block=1,
                            use_motion_mid_block=True, motion_num_attention_heads=2, motion_max_seq_length=32)
    renamed = animatediff.convert_motion_adapter_state_dict(adapter.state_dict())
    expected = animatediff.motion_module_shapes(CONFIG.unet, with_pos_encoder=False)
    assert {k: tuple(v.shape) for k, v in renamed.items()} == expected
    original = {k: v for k, v in wf.motion_module_tensors(CONFIG).items() if "pos_encoder" not in k}
    wf.save_weights(tmp_path / "adapter" / "diffusion_pytorch_model.safetensors",
                    convert_animatediff_checkpoint_to_diffusers(original))
    assert_same_tensors(animatediff.load_motion_module_state_dict(tmp_path / "adapter"), original)


def test_animatediff_wrappers_are_stripped_and_unet_files_refused(tmp_path):
    tensors = wf.motion_module_tensors(CONFIG)
    torch.save({"state_dict": {"module." + k: v for k, v in tensors.items()}}, tmp_path / "finetuned.ckpt")
    loaded = animatediff.load_motion_module_state_dict(tmp_path / "finetuned.ckpt")
    assert sorted(loaded) == sorted(k for k in tensors if "pos_encoder" not in k)
    wf.write_sd15_single_file(tmp_path / "sd.safetensors", CONFIG)
    with pytest.raises(WeightsError, match=r"holds no AnimateDiff motion module weights .*temporal_transformer"):
        animatediff.load_motion_module_state_dict(tmp_path / "sd.safetensors")


# --- wav2vec2 ----------------------------------------------------------------------------------

def test_wav2vec2_folder_loads_offline_in_eval_mode(tmp_path):
    written = wf.write_wav2vec2_folder(tmp_path / "wav2vec2-base-960h", CONFIG)
    model = wav2vec2.load_wav2vec2(tmp_path / "wav2vec2-base-960h")
    assert not model.training and model.config.num_attention_heads == CONFIG.audio_encoder["num_attention_heads"]
    assert_same_tensors(model.state_dict(), written)


@pytest.mark.parametrize("prefix,legacy", [("", False), ("wav2vec2.", True)])
def test_wav2vec2_single_file_loads_with_config_inferred_from_shapes(tmp_path, prefix, legacy):
    written = wf.write_wav2vec2_single_file(tmp_path / "w.safetensors", CONFIG, prefix=prefix, legacy_weight_norm=legacy)
    config, _, _ = wav2vec2.read_wav2vec2(tmp_path / "w.safetensors")
    inferred = {k: getattr(config, k) for k in CONFIG.audio_encoder if k != "num_attention_heads"}
    assert inferred == {k: list(v) if isinstance(v, tuple) else v for k, v in CONFIG.audio_encoder.items()
                        if k != "num_attention_heads"}
    model = wav2vec2.load_wav2vec2(tmp_path / "w.safetensors", config_overrides={"num_attention_heads": 2})
    assert_same_tensors(model.state_dict(), written)


def test_wav2vec2_large_layout_is_detected_as_stable_layer_norm(tmp_path):
    large = tiny_config()
    large.audio_encoder.update(feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True)
    wf.write_wav2vec2_single_file(tmp_path / "large.safetensors", large)
    config, _, _ = wav2vec2.read_wav2vec2(tmp_path / "large.safetensors")
    assert (config.feat_extract_norm, config.do_stable_layer_norm, config.conv_bias) == ("layer", True, True)


@pytest.mark.parametrize("name,fields", [
    ("base", dict()),
    ("large-lv60", dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                        feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True)),
])
def test_wav2vec2_config_of_real_sizes_is_inferred_from_shapes_alone(name, fields):
    from accelerate import init_empty_weights
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    truth = Wav2Vec2Config(**fields)
    with init_empty_weights():
        shapes = {k: torch.empty(v.shape, device="meta") for k, v in Wav2Vec2Model(truth).state_dict().items()}
    inferred = wav2vec2.infer_wav2vec2_config(wav2vec2.normalize_wav2vec2_keys(shapes))
    keys = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "conv_dim", "conv_kernel",
            "conv_stride", "conv_bias", "feat_extract_norm", "do_stable_layer_norm", "num_conv_pos_embeddings",
            "num_conv_pos_embedding_groups")
    def fields_of(config):
        return {k: list(v) if isinstance(v, tuple) else v for k in keys if (v := getattr(config, k)) is not None}

    assert fields_of(inferred) == fields_of(truth), name


def test_non_wav2vec2_files_are_refused(tmp_path):
    wf.write_vae_single_file(tmp_path / "vae.safetensors", CONFIG)
    with pytest.raises(WeightsError, match=r"vae.safetensors holds no wav2vec2 weights .*feature_projection"):
        wav2vec2.load_wav2vec2(tmp_path / "vae.safetensors")


# --- native EMO checkpoint -----------------------------------------------------------------------

def test_native_checkpoint_round_trips_bit_exact_with_shared_and_strided_storage(tmp_path):
    base = torch.randn(4, 6)
    components = {
        "face_locator": {"a": base, "view": base[:2], "transposed": base.t(), "half": torch.randn(3).half(),
                         "bf16": torch.randn(5).bfloat16(), "steps": torch.arange(3)},
        "speed_encoder": torch.nn.Linear(3, 2),
    }
    native.save_checkpoint(tmp_path / "emo", CONFIG, components, metadata={"step": 12})
    config, loaded = native.load_checkpoint(tmp_path / "emo")
    assert config.to_dict() == CONFIG.to_dict() and native.read_metadata(tmp_path / "emo") == {"step": 12}
    assert_same_tensors(loaded["face_locator"], components["face_locator"])
    assert_same_tensors(loaded["speed_encoder"], components["speed_encoder"].state_dict())


def test_native_save_replaces_a_checkpoint_only_with_force_and_only_when_complete(tmp_path, monkeypatch):
    folder = tmp_path / "emo"
    native.save_checkpoint(folder, CONFIG, {"vae": {"w": torch.ones(2)}, "temporal": {"w": torch.ones(1)}})
    with pytest.raises(OutputError, match=r"emo already exists and is not empty; give --force"):
        native.save_checkpoint(folder, CONFIG, {"vae": {"w": torch.zeros(2)}})
    (folder / "checkpoint-7").mkdir()
    (folder / "checkpoint-7" / "progress.json").write_text("{}")
    (folder / "notes.txt").write_text("mine")
    native.save_checkpoint(folder, CONFIG, {"vae": {"w": torch.zeros(2)}}, force=True)
    config, loaded = native.load_checkpoint(folder)
    assert sorted(loaded) == ["vae"] and torch.equal(loaded["vae"]["w"], torch.zeros(2))  # stale temporal gone
    assert (folder / "checkpoint-7" / "progress.json").read_text() == "{}"
    assert (folder / "notes.txt").read_text() == "mine"

    def fail(*args, **kwargs):
        raise KeyboardInterrupt("cancelled")

    monkeypatch.setattr(native, "save_file", fail)
    with pytest.raises(KeyboardInterrupt):
        native.save_checkpoint(folder, CONFIG, {"vae": {"w": torch.full((2,), 5.0)}}, force=True)
    assert torch.equal(native.load_checkpoint(folder)[1]["vae"]["w"], torch.zeros(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emo"]
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint-7", "config.json", "notes.txt",
                                                        "vae.safetensors"]
    with pytest.raises(WeightsError, match=r"unknown components \['unet'\]"):
        native.save_checkpoint(folder, CONFIG, {"unet": {}})


def test_native_load_refusals_name_the_path(tmp_path):
    with pytest.raises(WeightsError, match=r"no such folder; expected an EMO checkpoint folder"):
        native.load_checkpoint(tmp_path / "absent")
    with pytest.raises(WeightsError, match=r"no config.json"):
        native.load_checkpoint(tmp_path)
    native.save_checkpoint(tmp_path / "emo", CONFIG, {"temporal": {"w": torch.randn(64, 64)}})
    truncate(tmp_path / "emo" / "temporal.safetensors")
    with pytest.raises(WeightsError, match=r"temporal.safetensors: cannot be read as safetensors, truncated or corrupt"):
        native.load_checkpoint(tmp_path / "emo")
    wf.save_weights(tmp_path / "emo" / "temporal.safetensors", {"w": torch.zeros(1)})
    wf.save_weights(tmp_path / "emo" / "lora.safetensors", {"w": torch.zeros(1)})
    with pytest.raises(WeightsError, match=r"\['lora.safetensors'\] are not EMO components"):
        native.load_checkpoint(tmp_path / "emo")


# --- describe ----------------------------------------------------------------------------------

def test_describe_names_each_kind_and_its_fit(tmp_path):
    wf.write_sd15_single_file(tmp_path / "sd.safetensors", CONFIG)
    wf.write_diffusers_pipeline_folder(tmp_path / "pipe", CONFIG)
    wf.write_vae_single_file(tmp_path / "vae.safetensors", CONFIG)
    wf.write_vae_single_file(tmp_path / "dvae.safetensors", CONFIG, layout="diffusers")
    wf.write_animatediff_motion_module(tmp_path / "mm", CONFIG, fmt="ckpt")
    wf.write_wav2vec2_folder(tmp_path / "w2v", CONFIG)
    wf.write_wav2vec2_single_file(tmp_path / "w2v.safetensors", CONFIG)
    native.save_checkpoint(tmp_path / "emo", CONFIG, {"vae": wf.tiny_vae(CONFIG)})
    wf.save_weights(tmp_path / "other.safetensors", {"lora.down": torch.zeros(2)})
    kinds = {
        "sd.safetensors": "SD-1.5 single-file checkpoint", "pipe": "diffusers pipeline folder",
        "pipe/unet": "diffusers UNet2DConditionModel folder", "vae.safetensors": "LDM VAE",
        "dvae.safetensors": "diffusers VAE file", "mm.ckpt": "AnimateDiff motion module",
        "w2v": "wav2vec2 folder", "w2v.safetensors": "wav2vec2 file", "emo": "native EMO checkpoint",
        "other.safetensors": "unknown",
    }
    for name, kind in kinds.items():
        text = describe(tmp_path / name)
        assert text.splitlines()[0].startswith(f"{tmp_path / name}: {kind}"), text
        assert "with other shapes" not in text or " 0 with other shapes" in text, text
    assert "unet vs the tiny config: 208/208 keys match, 0 missing" in describe(tmp_path / "sd.safetensors")
    assert "7 motion modules, positional encoding for 32 frames" in describe(tmp_path / "mm.ckpt")
    assert "vae: absent" not in describe(tmp_path / "emo") and "backbone: absent" in describe(tmp_path / "emo")


def test_saving_a_module_writes_its_own_tensors_without_copying_them():
    """A full-size model is 9 GB: saving must not clone it (only views, transposes and shared storage are copied)."""
    module = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    plain = native._plain_tensors("face_locator", module)
    assert {k: v.data_ptr() for k, v in plain.items()} == {k: v.data_ptr() for k, v in module.state_dict().items()}
    base = torch.randn(4, 6)
    copied = native._plain_tensors("face_locator", {"a": base, "view": base[2:], "t": base.t()})
    assert copied["a"].data_ptr() == base.data_ptr()
    assert copied["view"].data_ptr() != base[2:].data_ptr() and copied["t"].is_contiguous()
