"""Run by ComfyUI-Manager after `pip install -r requirements.txt`: add OpenCV only where none is usable.

OpenCV ships as four distributions that all provide `cv2`; installing a second one over a user's
existing one overwrites its files, and OpenCV 5 dropped the Haar cascades the face locator uses.
So: keep any cv2 that has `CascadeClassifier`, else install `opencv-python-headless<5`.
"""

import importlib
import subprocess
import sys


def cv2_with_haar() -> bool:
    """True when an importable cv2 still has CascadeClassifier and its cascade files."""
    try:
        cv2 = importlib.import_module("cv2")
    except ImportError:
        return False
    return hasattr(cv2, "CascadeClassifier") and hasattr(getattr(cv2, "data", None), "haarcascades")


if __name__ == "__main__":
    if cv2_with_haar():
        print("emo-comfy: using the installed OpenCV")
    else:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "opencv-python-headless>=4.5,<5"])
