"""The EMO nodes for ComfyUI: thin adapters from ComfyUI types to ``emo_models`` calls.

Importing this package is cheap: torch and the ComfyUI bridge only; ``emo_models`` (diffusers,
transformers, librosa) is imported inside the node functions.
"""

from . import comfy_bridge
from .audio import AudioFeatures, AudioFrameInfo
from .model_loader import LoadEMOModel
from .reference import EncodeReference, FaceLocatorMask
from .sampling import EMOSampler, ExtendWithMotionFrames, SpeedCondition
from .video import RenderVideo
from .vocals import IsolateVocals

comfy_bridge.register_model_folders()

NODE_CLASS_MAPPINGS = {
    "EMOLoadModel": LoadEMOModel,
    "EMOEncodeReference": EncodeReference,
    "EMOAudioFeatures": AudioFeatures,
    "EMOFaceLocatorMask": FaceLocatorMask,
    "EMOSpeedCondition": SpeedCondition,
    "EMOSampler": EMOSampler,
    "EMOExtendWithMotionFrames": ExtendWithMotionFrames,
    "EMOAudioFrameInfo": AudioFrameInfo,
    "EMOIsolateVocals": IsolateVocals,
    "EMORenderVideo": RenderVideo,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "EMOLoadModel": "Load EMO Model",
    "EMOEncodeReference": "Encode Reference",
    "EMOAudioFeatures": "Audio Features",
    "EMOFaceLocatorMask": "Face Locator Mask",
    "EMOSpeedCondition": "Speed Condition",
    "EMOSampler": "EMO Sampler",
    "EMOExtendWithMotionFrames": "Extend With Motion Frames",
    "EMOAudioFrameInfo": "Audio Frame Info",
    "EMOIsolateVocals": "Isolate Vocals",
    "EMORenderVideo": "EMO Render Video",
}
