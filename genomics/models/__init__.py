"""Genomics models: HyenaDNA (Hyena long convolutions) and Caduceus (bidirectional,
reverse-complement equivariant Mamba), each built with a norm factory (layernorm | rmsnorm | dyt)."""
