"""Speech: wav2vec 2.0 (fairseq2) pretraining with LayerNorm or DyT, LibriSpeech data."""


def load_pretrained(src, norm=None, alpha_init=0.5):
    """A published wav2vec 2.0 checkpoint as fairseq2's model (eval mode); see
    :func:`speech.pretrained.load_pretrained` (imported on first call: ``import speech`` stays cheap)."""
    from speech.pretrained import load_pretrained as load

    return load(src, norm=norm, alpha_init=alpha_init)
