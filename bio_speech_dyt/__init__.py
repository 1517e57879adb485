"""bio-speech-dyt: the shared, domain-free DyT core (module, converter, kernels, training harness)."""
from bio_speech_dyt.convert import ConversionReport, convert_norms
from bio_speech_dyt.dyt import DyT, dyt_reference
from bio_speech_dyt.kernels import dyt
from bio_speech_dyt.norms import make_norm, resolve_alpha

__all__ = ["DyT", "dyt", "dyt_reference", "convert_norms", "ConversionReport", "make_norm", "resolve_alpha"]
__version__ = "0.1.0"
