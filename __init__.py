"""emo-comfy: EMO (Emote Portrait Alive) nodes for ComfyUI.

ComfyUI imports this file as the pack's entry point. It stays cheap: no model, no diffusers import.
The pack's folder goes on ``sys.path`` (appended, so ComfyUI's own modules keep precedence) so the
nodes can import the bundled ``emo_models`` package when it is not pip-installed.
"""

import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
if _here not in sys.path:
    sys.path.append(_here)

if __package__:  # imported by ComfyUI as the pack's package
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: E402
else:  # imported as a plain file (pytest collecting the checkout's root)
    from nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: E402

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
