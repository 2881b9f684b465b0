"""emo_models: EMO (Emote Portrait Alive) as a plain PyTorch package, free of ComfyUI.

Importing this package is cheap; the model, weights and pipeline live in submodules.
"""

__version__ = "0.1.0"
