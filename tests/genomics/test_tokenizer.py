import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genomics import tokenizer as tk
from genomics.tokenizer import (
    DNATokenizer, SequenceError, complement_ids, normalise_bytes, normalise_sequence, reverse_complement,
    reverse_complement_ids,
)

DNA = st.text(alphabet="ACGTNacgtn", min_size=0, max_size=200)


def test_ids_match_hyenadna():
    assert (tk.CLS_ID, tk.SEP_ID, tk.BOS_ID, tk.MASK_ID, tk.PAD_ID, tk.RESERVED_ID, tk.UNK_ID) == (0, 1, 2, 3, 4, 5, 6)
    assert (tk.A_ID, tk.C_ID, tk.G_ID, tk.T_ID, tk.N_ID) == (7, 8, 9, 10, 11)
    assert tk.VOCAB_SIZE == 12 and tk.PADDED_VOCAB_SIZE == 16 and tk.BASE_IDS == (7, 8, 9, 10)
    assert tk.EOS_ID == tk.SEP_ID


def test_encode_uppercases_and_maps_iupac_to_n():
    ids = DNATokenizer().encode("ACGTNacgtnRy")
    assert ids.dtype == np.int64
    assert ids.tolist() == [7, 8, 9, 10, 11, 7, 8, 9, 10, 11, 11, 11]


def test_encode_padding_truncation_eos():
    tok = DNATokenizer()
    assert tok.encode("AC", max_length=4, padding="left").tolist() == [4, 4, 7, 8]
    assert tok.encode("AC", max_length=4, padding="right", add_eos=True).tolist() == [7, 8, 1, 4]
    assert tok.encode("ACGTA", max_length=3).tolist() == [7, 8, 9]
    assert tok.encode("ACGTA", max_length=3, add_eos=True).tolist() == [7, 8, 1]
    with pytest.raises(ValueError, match="padding needs max_length"):
        tok.encode("AC", padding="left")


def test_invalid_character_names_source_record_position():
    with pytest.raises(SequenceError, match=r"genome\.fa: record chr7: invalid character '-' at position 4"):
        normalise_bytes(b"ACG-T", source="genome.fa", record="chr7")
    with pytest.raises(SequenceError, match="position 1,004"):
        normalise_bytes(b"ACG*", source="f", record="r", offset=1000)
    with pytest.raises(SequenceError, match="invalid character 'é'"):
        normalise_sequence("ACé")


def test_normaliser_counts_iupac_and_softmask():
    canon, iupac, lower = normalise_bytes(b"acgtRYswKMbdhvNn")
    assert canon.tobytes() == b"ACGTNNNNNNNNNNNN"
    assert iupac == 10 and lower == 11
    assert normalise_sequence("acRT") == ("ACNT", 1)


def test_decode_roundtrip_and_specials():
    tok = DNATokenizer()
    assert tok.decode(tok.encode("ACGTN", max_length=8, padding="left")) == "ACGTN"
    assert tok.decode(torch.tensor([3, 7, 1])) == "A"
    assert tok.decode([3, 7, 1], skip_special=False) == "[MASK]A[SEP]"


def test_complement_numpy_and_torch_keep_specials():
    ids = np.arange(16)
    comp = complement_ids(ids)
    assert comp[[7, 8, 9, 10, 11]].tolist() == [10, 9, 8, 7, 11]
    assert comp[:7].tolist() == list(range(7))
    t = torch.tensor([[4, 4, 7, 8, 9]], dtype=torch.long)
    assert reverse_complement_ids(t).tolist() == [[8, 9, 10, 4, 4]]
    assert reverse_complement_ids(t.numpy()).tolist() == [[8, 9, 10, 4, 4]]
    assert reverse_complement_ids(t.to(torch.uint8)).dtype == torch.uint8


def test_reverse_complement_string():
    assert reverse_complement("AACGTn") == "nACGTT"


@settings(max_examples=60, deadline=None)
@given(DNA)
def test_rc_commutes_with_encoding(seq):
    tok = DNATokenizer()
    assert reverse_complement(reverse_complement(seq)) == seq
    np.testing.assert_array_equal(tok.encode(reverse_complement(seq)), reverse_complement_ids(tok.encode(seq)))
    t = torch.from_numpy(tok.encode(seq))
    assert torch.equal(reverse_complement_ids(reverse_complement_ids(t)), t)
