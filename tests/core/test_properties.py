"""Property tests (hypothesis): tokenizer round trip, reverse-complement involution, DyT kernel shapes."""
import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bio_speech_dyt import DyT, dyt_reference
from bio_speech_dyt.kernels import dyt
from genomics.tokenizer import DNATokenizer, normalise_sequence, reverse_complement, reverse_complement_ids

DNA = st.text(alphabet="ACGTN", min_size=1, max_size=300)


@given(DNA, st.sampled_from(["left", "right"]), st.integers(0, 20))
def test_tokenizer_round_trip_with_padding(seq, side, extra):
    tok = DNATokenizer()
    ids = tok.encode(seq, max_length=len(seq) + extra, padding=side)
    assert len(ids) == len(seq) + extra
    assert tok.decode(ids) == seq


@given(st.text(alphabet="acgtnACGTN", min_size=1, max_size=200))
def test_soft_masked_lowercase_is_uppercased(seq):
    assert normalise_sequence(seq)[0] == seq.upper()


@given(DNA)
def test_reverse_complement_is_an_involution(seq):
    assert reverse_complement(reverse_complement(seq)) == seq
    ids = torch.from_numpy(DNATokenizer().encode(seq))
    assert torch.equal(reverse_complement_ids(reverse_complement_ids(ids)), ids)
    assert DNATokenizer().decode(reverse_complement_ids(ids)) == reverse_complement(seq)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(1, 5), min_size=1, max_size=3),
    st.integers(1, 70),
    st.booleans(),
    st.booleans(),
    st.integers(0, 2**31 - 1),
)
def test_dyt_kernel_any_shape_matches_float64(lead, channels, channels_last, bias, seed):
    g = torch.Generator().manual_seed(seed)
    shape = (*lead, channels) if channels_last else (lead[0], channels, *lead[1:])
    x = torch.randn(shape, generator=g) * 3
    alpha = torch.rand(1, generator=g) + 0.1
    w = torch.randn(channels, generator=g)
    b = torch.randn(channels, generator=g) if bias else None
    y = dyt(x, alpha, w, b, channels_last=channels_last)
    ref = dyt_reference(x.double(), alpha.double(), w.double(), None if b is None else b.double(),
                        channels_last=channels_last)
    assert y.shape == x.shape and y.dtype == x.dtype
    np.testing.assert_allclose(y.numpy(), ref.numpy(), rtol=1e-5, atol=1e-6)
    m = DyT(channels, channels_last=channels_last)
    assert m(x).shape == x.shape
