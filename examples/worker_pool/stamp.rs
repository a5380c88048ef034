//! The stamp every block carries: its sequence number and a checksum over
//! its kind, the sequence number and the payload, which the freeing thread
//! verifies — a response buffer's bytes and a header vector's words too,
//! whose lengths must also be the ones their sequence number calls for.

use homeslab::allocator_api2::alloc::Allocator;
use homeslab::allocator_api2::vec::Vec as AVec;

use crate::common::subjects::Obj;
use crate::{HEADER, HEADER_WORDS, LARGE_EVERY, LARGE_RESPONSE_LEN, RESPONSE, RESPONSE_LEN};

/// A message of kind `K` (a pool index) and `16 + 8 * P` bytes: a sequence
/// number, a checksum over the kind, the sequence number and the payload, and
/// the payload.
#[repr(C)]
pub struct Msg<const K: usize, const P: usize> {
    seq: u64,
    sum: u64,
    payload: [u64; P],
}

#[inline(always)]
fn fill(seq: u64, i: usize) -> u64 {
    seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (i as u64).wrapping_mul(0xd6e8_feb8_6659_fd93)
}

#[inline(always)]
fn checksum(kind: usize, seq: u64, payload: impl IntoIterator<Item = u64>) -> u64 {
    let mut h = seq ^ 0x243f_6a88_85a3_08d3;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    for w in std::iter::once(kind as u64).chain(payload) {
        h = (h ^ w).rotate_left(23).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    }
    h ^ (h >> 29)
}

/// Writes a stamp of `n >= 2` words with `put`: the sequence number, the
/// checksum, then `n - 2` payload words (as a [`Msg`] lays them out).
#[inline(always)]
pub fn stamp_words(kind: usize, seq: u64, n: usize, mut put: impl FnMut(u64)) {
    let payload = (0..n - 2).map(move |i| fill(seq, i));
    put(seq);
    put(checksum(kind, seq, payload.clone()));
    payload.for_each(put);
}

/// The sequence number of `n` words that [`stamp_words`] wrote, if they
/// check out and `n` is the `words(seq)` their sequence number calls for.
#[inline(always)]
fn verify_words(
    kind: usize,
    mut it: impl Iterator<Item = u64> + Clone,
    n: usize,
    words: fn(u64) -> usize,
) -> Option<u64> {
    let seq = it.next()?;
    let sum = it.next()?;
    let ok = n == words(seq)
        && it.clone().enumerate().all(|(i, w)| w == fill(seq, i))
        && checksum(kind, seq, it) == sum;
    ok.then_some(seq)
}

/// The length in words of the response to request `seq`.
fn response_words(seq: u64) -> usize {
    if seq % LARGE_EVERY == 0 {
        LARGE_RESPONSE_LEN / 8
    } else {
        RESPONSE_LEN / 8
    }
}

/// Fills the (empty) buffer with the response to request `seq`: its
/// stamp's words, little-endian.
#[inline]
pub fn write_response(buf: &mut Vec<u8>, seq: u64) {
    stamp_words(RESPONSE, seq, response_words(seq), |w| {
        buf.extend_from_slice(&w.to_le_bytes())
    });
}

/// The request a response answers, if its stamp checks out.
#[inline]
pub fn verify_response(buf: &[u8]) -> Option<u64> {
    if buf.len() % 8 != 0 {
        return None;
    }
    let words = buf
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8-byte chunk")));
    verify_words(RESPONSE, words, buf.len() / 8, response_words)
}

/// The number of header words of request `seq`.
pub fn header_words(seq: u64) -> usize {
    let span = (HEADER_WORDS.1 - HEADER_WORDS.0 + 1) as u64;
    HEADER_WORDS.0 + (fill(seq, usize::MAX) % span) as usize
}

/// The request some headers belong to, if their stamp checks out.
#[inline]
pub fn verify_headers<H: Allocator>(h: &AVec<u64, H>) -> Option<u64> {
    verify_words(HEADER, h.iter().copied(), h.len(), header_words)
}

/// What the example needs of a message type.
pub trait Stamped: Obj {
    /// Its pool's index.
    const POOL: usize;
    /// A stamped message.
    fn stamp(seq: u64) -> Self;
    /// The sequence number, if the stamp checks out.
    fn verify(&self) -> Option<u64>;
}

impl<const K: usize, const P: usize> Obj for Msg<K, P> {
    #[inline]
    fn make(seed: u64) -> Self {
        Self::stamp(seed)
    }
    #[inline]
    fn first(&self) -> u64 {
        self.seq
    }
}

impl<const K: usize, const P: usize> Stamped for Msg<K, P> {
    const POOL: usize = K;

    #[inline]
    fn stamp(seq: u64) -> Self {
        let mut payload = [0u64; P];
        for (i, w) in payload.iter_mut().enumerate() {
            *w = fill(seq, i);
        }
        let sum = checksum(K, seq, payload.iter().copied());
        Msg { seq, sum, payload }
    }

    #[inline]
    fn verify(&self) -> Option<u64> {
        let ok = checksum(K, self.seq, self.payload.iter().copied()) == self.sum
            && self
                .payload
                .iter()
                .enumerate()
                .all(|(i, &w)| w == fill(self.seq, i));
        ok.then_some(self.seq)
    }
}
