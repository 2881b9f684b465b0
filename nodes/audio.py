"""Audio Features and Audio Frame Info: speech or singing in, per-frame wav2vec2 features and frame counts out."""

from __future__ import annotations

from emo_models.options import OPTIONS, check_option

from . import comfy_bridge
from .boundary import audio_to_waveform

FPS_UNSET = 0.0  # the fps widget's "from the checkpoint"
FPS = OPTIONS["fps"].node_input(unset=FPS_UNSET, step=1.0)  # give CreateVideo the same (connect the fps output)


class AudioFeatures:
    """EMO_AUDIO: wav2vec2 features of an audio span at the video frame rate, plus that span as AUDIO."""

    CATEGORY = "EMO"
    RETURN_TYPES = ("EMO_AUDIO", "AUDIO", "INT", "FLOAT")
    RETURN_NAMES = ("emo_audio", "audio", "frames", "fps")
    OUTPUT_TOOLTIPS = ("Audio features for EMO Sampler.", "The chosen span, for CreateVideo.",
                       "Video frames this span gives (seconds x fps, rounded as the checkpoint says).",
                       "The frame rate, for CreateVideo.")
    FUNCTION = "encode"
    DESCRIPTION = __doc__

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "emo_model": ("EMO_MODEL",),
            "audio": ("AUDIO", {"tooltip": "Speech or singing at any sample rate; channels are averaged."}),
            "fps": FPS,
            "start": OPTIONS["start"].node_input(step=0.01),
            "duration": OPTIONS["duration"].node_input(step=0.01),
        }}

    def encode(self, emo_model, audio, fps, start, duration):
        from emo_models.media import trim_audio

        waveform, rate = audio_to_waveform(audio, "audio")
        start, duration = check_option("start", start), check_option("duration", duration)
        span = trim_audio(waveform, rate, start, duration)
        label = f"audio ({start:g} s + {'rest' if duration == 0 else f'{duration:g} s'})"
        encoding = emo_model.loaded().encode_audio(span, rate, fps=OPTIONS["fps"].unset_to_none(fps, FPS_UNSET), name=label)
        encoding = encoding.to(comfy_bridge.intermediate_device())
        return encoding, {"waveform": span, "sample_rate": rate}, encoding.frames, encoding.fps


class AudioFrameInfo:
    """Frames and seconds of an AUDIO at a frame rate, so CreateVideo and the sampler agree."""

    CATEGORY = "EMO"
    RETURN_TYPES = ("INT", "FLOAT", "FLOAT")
    RETURN_NAMES = ("frames", "seconds", "fps")
    FUNCTION = "measure"
    DESCRIPTION = __doc__

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"emo_model": ("EMO_MODEL", {"tooltip": "The model: its fps and frame rounding."}),
                             "audio": ("AUDIO",), "fps": FPS}}

    def measure(self, emo_model, audio, fps):
        waveform, rate = audio_to_waveform(audio, "audio", silence_ok=True)
        samples = int(waveform.shape[-1])
        frames, fps = emo_model.pipeline.count_frames(samples, rate, OPTIONS["fps"].unset_to_none(fps, FPS_UNSET))
        return frames, samples / rate, fps
