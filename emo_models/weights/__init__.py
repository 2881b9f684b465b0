"""Weight loading and conversion, one module per on-disk format.

``safe_load`` (readers, checks, load reports), ``sd15`` (SD-1.5 UNet/VAE in every layout),
``animatediff`` (motion modules), ``wav2vec2`` (audio encoder), ``native`` (our checkpoint folder),
``inspect`` (``describe``). Only the light reader API is imported here; the format modules import
diffusers/transformers when used.
"""

from .safe_load import LoadReport, WeightsError, load_component, read_state_dict

__all__ = ["LoadReport", "WeightsError", "load_component", "read_state_dict"]
