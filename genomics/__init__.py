"""Genomics models: HyenaDNA (Hyena long convolutions) and Caduceus (bidirectional,
reverse-complement equivariant Mamba), each built with a norm factory (layernorm | rmsnorm | dyt)."""


def load_pretrained(src, norm=None, alpha_init=0.5):
    """A published HyenaDNA or Caduceus checkpoint as our model (eval mode); see
    :func:`genomics.pretrained.load_pretrained` (imported on first call: ``import genomics`` stays cheap)."""
    from genomics.pretrained import load_pretrained as load

    return load(src, norm=norm, alpha_init=alpha_init)
