"""Any wav2vec2-architecture encoder (base, large, XLS-R) works, as a single file or a folder.

Tiny random-weight encoders in each released layout (base: group-norm feature extractor, post-norm;
large-960h: the same, deeper and wider; LV-60 / XLSR-53 / XLS-R: layer-norm feature extractor with conv
bias, stable (pre-norm) layer norm) go through the same loaders users' files go through.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emo_models.config import tiny_config
from emo_models.weights.wav2vec2 import infer_wav2vec2_config, normalize_wav2vec2_keys, wav2vec2_variant
from tests.test_nodes import load_pack, models_dir, run_node  # noqa: F401 (models_dir is a fixture)
from tests.weight_files import write_wav2vec2_folder, write_wav2vec2_single_file

LAYOUTS = {
    "base": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
    "large-960h": dict(hidden_size=48, num_hidden_layers=3, num_attention_heads=3, intermediate_size=96),
    "xls-r": dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=128,
                  feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True),
}


def layout_config(name: str):
    config = tiny_config()
    config.audio_encoder.update(LAYOUTS[name])
    return config


def write_encoder(tmp_path, name: str, form: str):
    config = layout_config(name)
    if form == "folder":
        write_wav2vec2_folder(tmp_path / name, config)
        return tmp_path / name
    write_wav2vec2_single_file(tmp_path / f"{name}.safetensors", config, prefix="wav2vec2.")
    return tmp_path / f"{name}.safetensors"


@pytest.mark.parametrize("form", ["file", "folder"])
@pytest.mark.parametrize("name", list(LAYOUTS))
def test_each_layout_assembles_with_the_projection_sized_from_its_layers_and_width(tmp_path, name, form,
                                                                                  speech_wave):
    from emo_models.loading import assemble

    pipeline, _ = assemble(tiny_config(), audio_encoder=write_encoder(tmp_path, name, form))
    fields = LAYOUTS[name]
    layers, width = fields["num_hidden_layers"], fields["hidden_size"]
    assert (pipeline.config.audio_layers, pipeline.config.audio_channels) == (layers, width)
    assert pipeline.config.audio_encoder.get("do_stable_layer_norm", False) == fields.get("do_stable_layer_norm", False)
    assert pipeline.model.audio_projection.proj1.in_features == 5 * layers * width
    audio = pipeline.encode_audio(speech_wave, pipeline.config.audio_sample_rate, fps=25.0)
    windows = audio.windows(0, audio.frames)
    assert windows.shape == (30, 5, layers, width)
    tokens = pipeline.model.audio_projection(windows)
    assert tokens.shape == (30, pipeline.config.audio_tokens, pipeline.config.cross_attention_dim)


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_audio_features_are_the_encoders_own_layer_outputs(tmp_path, name, speech_wave):
    """With no resampling (one row per CNN frame) our layer loop gives transformers' per-layer outputs,
    the last one as ``last_hidden_state``: after the final layer norm of stable-layer-norm models (as
    transformers 4.x's hidden_states[-1]; 5.x records that layer before the norm)."""
    from emo_models.audio import audio_features, normalize_waveform
    from emo_models.weights.wav2vec2 import load_wav2vec2

    encoder = load_wav2vec2(write_encoder(tmp_path, name, "folder"))
    wave = torch.tensor(speech_wave)
    cnn_frames = encoder.feature_extractor(wave[None]).shape[-1]
    ours = audio_features(encoder, speech_wave, cnn_frames)
    with torch.no_grad():
        out = encoder(normalize_waveform(wave)[None], output_hidden_states=True)
    theirs = [*out.hidden_states[1:-1], out.last_hidden_state]
    assert len(theirs) == LAYOUTS[name]["num_hidden_layers"]
    torch.testing.assert_close(ours, torch.stack(theirs, dim=2)[0], atol=1e-5, rtol=1e-4)


def test_init_writes_a_checkpoint_that_reloads_with_the_xls_r_encoder(tmp_path):
    from emo_models.cli import main
    from emo_models.loading import load_pipeline

    source = write_encoder(tmp_path, "xls-r", "file")
    assert main(["init", "--config", "tiny", "--out", str(tmp_path / "emo"), "--audio-encoder", str(source)]) == 0
    pipeline, _ = load_pipeline(tmp_path / "emo")
    encoder = pipeline.audio_encoder.config
    assert (encoder.num_hidden_layers, encoder.hidden_size, encoder.do_stable_layer_norm) == (4, 64, True)
    assert pipeline.model.audio_projection.proj1.in_features == 5 * 4 * 64


def test_load_model_node_lists_and_assembles_a_transformers_folder(tmp_path, models_dir):  # noqa: F811
    write_wav2vec2_folder(models_dir / "audio_encoders" / "xls-r-tiny", layout_config("xls-r"))
    spec = load_pack().NODE_CLASS_MAPPINGS["EMOLoadModel"].INPUT_TYPES()
    assert "xls-r-tiny" in spec["required"]["audio_encoder"][0]
    (model,) = run_node("EMOLoadModel", checkpoint="(assemble from parts)", audio_encoder="xls-r-tiny",
                        config="tiny", dtype="fp32")
    assert model.pipeline.config.audio_layers == 4 and "xls-r-tiny" in model.source


@pytest.mark.parametrize("fields,words", [
    (dict(), "wav2vec2 base: 12 layers, width 768, 12 heads, post-norm, feature extractor norm 'group'"),
    (dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
     "wav2vec2 large (960h layout): 24 layers, width 1024, 16 heads, post-norm"),
    (dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
          feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True),
     "wav2vec2 large (LV-60 / XLSR-53 / XLS-R 300M layout): 24 layers, width 1024, 16 heads, stable layer norm"),
    (dict(hidden_size=1280, num_hidden_layers=48, num_attention_heads=16, intermediate_size=5120,
          feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True),
     "wav2vec2 XLS-R 1B: 48 layers, width 1280, 16 heads, stable layer norm"),
])
def test_real_layouts_are_named_from_their_shapes_alone(fields, words):
    from accelerate import init_empty_weights
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    with init_empty_weights():
        shapes = {k: torch.empty(v.shape, device="meta") for k, v in Wav2Vec2Model(Wav2Vec2Config(**fields)).state_dict().items()}
    assert wav2vec2_variant(infer_wav2vec2_config(normalize_wav2vec2_keys(shapes))).startswith(words)


def test_inspect_names_what_it_found_and_the_projection_it_needs(tmp_path):
    from emo_models.weights.inspect import describe

    text = describe(write_encoder(tmp_path, "xls-r", "file"))
    assert "wav2vec2 file" in text
    assert "wav2vec2 custom: 4 layers, width 64, 1 head, stable layer norm (pre-norm), feature extractor norm 'layer'" in text
    assert "EMO audio features per frame: 5 x 4 x 64 (window x layers x width) = 1280 projection inputs" in text
    assert np.all([line.strip() for line in text.splitlines()])
