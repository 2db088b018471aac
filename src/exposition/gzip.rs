//! Gzip with a cached prefix: the snapshot part is compressed once, and each scrape appends
//! only its own few kilobytes to the same gzip member.
//!
//! Byte-level deflate/CRC work only; it knows nothing about metrics or about when the prefix
//! is rebuilt ([`super::cache`]).

use std::sync::Arc;

use bytes::Bytes;
#[cfg(test)]
use bytes::BytesMut;

/// The start of a gzip member: header plus deflate blocks of `plain`, ended with a sync flush
/// (byte-aligned, not final), and the running CRC. [`Gzipped::finish`] appends the per-scrape
/// bytes as further deflate blocks from a reset compressor (which refers back to nothing before
/// its own input) with the final-block flag, then the trailer: one valid gzip member, so every
/// client can read it, for the cost of compressing a few kilobytes per scrape.
pub(super) struct Gzipped {
    /// The gzip header and the deflate blocks, as chunks sent one after the other (shared
    /// with other scrapes and other generations: a changed group replaces only its chunk;
    /// a scrape's body holds the list, not a copy of it).
    pub(super) prefix: Arc<[Bytes]>,
    crc: crc32fast::Hasher,
    len: usize,
}

impl Gzipped {
    #[cfg(test)]
    pub(super) fn new(plain: &[u8]) -> Self {
        let mut out = Vec::with_capacity(plain.len() / 4 + 64);
        out.extend_from_slice(&GZIP_HEADER);
        let mut c = flate2::Compress::new(flate2::Compression::default(), false);
        deflate(&mut c, plain, &mut out, flate2::FlushCompress::Sync);
        let mut crc = crc32fast::Hasher::new();
        crc.update(plain);
        Gzipped {
            prefix: Arc::from([Bytes::from(out)]),
            crc,
            len: plain.len(),
        }
    }

    /// A gzip member's start made of independently compressed fragments, in order.
    pub(super) fn from_fragments(frags: &[&Fragment]) -> Self {
        let mut prefix = Vec::with_capacity(frags.len() + 1);
        prefix.push(Bytes::from_static(&GZIP_HEADER));
        let (mut crc, mut len) = (0u32, 0u64);
        for f in frags {
            prefix.push(f.data.clone());
            crc = multmodp(f.shift, crc) ^ f.crc;
            len += f.len;
        }
        Gzipped {
            prefix: prefix.into(),
            crc: crc32fast::Hasher::new_with_initial_len(crc, len),
            len: len as usize,
        }
    }

    #[cfg(test)]
    fn finish(&self, tail: &[u8]) -> Bytes {
        let mut out = BytesMut::from(&self.prefix.concat()[..]);
        out.extend_from_slice(&self.finish_tail(tail));
        out.freeze()
    }

    /// What follows the cached prefix: `tail` as final deflate blocks, then the trailer.
    pub(super) fn finish_tail(&self, tail: &[u8]) -> Bytes {
        let mut crc = self.crc.clone();
        crc.update(tail);
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&crc.finalize().to_le_bytes());
        // ISIZE is the length modulo 2^32 (RFC 1952).
        trailer[4..].copy_from_slice(&((self.len + tail.len()) as u32).to_le_bytes());
        Bytes::from(compressed(tail, flate2::FlushCompress::Finish, &trailer))
    }
}

/// ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL=0 OS=unknown
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];

/// Deflate level of fragments and of each scrape's tail: each is compressed again whenever
/// its text changes (or per scrape), so speed matters more than the last few percent.
const LEVEL: u32 = 1;

/// A compressor and an output buffer, reused: see [`DEFLATER`].
struct Deflater {
    c: flate2::Compress,
    out: Vec<u8>,
}

thread_local! {
    /// This thread's compressor and output buffer, reset before each use. miniz_oxide's
    /// state is about 300 kB, and the output of a text is not known before it is compressed:
    /// a fresh compressor and a grown-then-shrunk buffer per fragment and per scrape
    /// allocated and freed that much dozens of times per gzip scrape, and under scrape load
    /// the freed blocks stayed in the heap as holes (RSS grew by several MB over what is
    /// cached). One per runtime thread is a fixed cost; each result is copied out at its
    /// exact size.
    static DEFLATER: std::cell::RefCell<Deflater> = std::cell::RefCell::new(Deflater {
        c: flate2::Compress::new(flate2::Compression::new(LEVEL), false),
        out: Vec::new(),
    });
}

/// Buffers larger than this are not kept between uses (the first render of a large text).
const KEEP_OUT: usize = 256 * 1024;

/// `input` compressed by this thread's compressor, reset (the same state as a fresh one: no
/// dictionary, nothing pending, so the output refers to nothing before its input) and
/// flushed as asked, then `suffix`, as one exact-size buffer.
fn compressed(input: &[u8], flush: flate2::FlushCompress, suffix: &[u8]) -> Vec<u8> {
    DEFLATER.with(|d| {
        let mut d = d.borrow_mut();
        let Deflater { c, out } = &mut *d;
        c.reset();
        out.clear();
        deflate(c, input, out, flush);
        out.extend_from_slice(suffix);
        let exact = out.to_vec();
        if out.capacity() > KEEP_OUT {
            *out = Vec::new();
        }
        exact
    })
}

/// Some text compressed on its own: deflate blocks from a reset compressor ended with a sync
/// flush (byte-aligned, not final, no reference outside the text), so fragments concatenate
/// into one deflate stream; with the text's CRC-32 and length.
pub(super) struct Fragment {
    data: Bytes,
    crc: u32,
    len: u64,
    /// x^(8 len) modulo the CRC polynomial: what appending this fragment does to the CRC of
    /// what precedes it ([`crc32_combine`] with the shift precomputed).
    shift: u32,
}

impl Fragment {
    pub(super) fn new(text: &[u8]) -> Self {
        Fragment {
            data: Bytes::from(compressed(text, flate2::FlushCompress::Sync, &[])),
            crc: crc32fast::hash(text),
            len: text.len() as u64,
            shift: x8nmodp(text.len() as u64),
        }
    }
}

/// Multiplies two polynomials modulo the CRC-32 polynomial (reflected bit order), as zlib's
/// `multmodp`.
const fn multmodp(a: u32, mut b: u32) -> u32 {
    const POLY: u32 = 0xedb8_8320;
    let mut m: u32 = 1 << 31;
    let mut p: u32 = 0;
    loop {
        if a & m != 0 {
            p ^= b;
            if a & (m - 1) == 0 {
                break;
            }
        }
        m >>= 1;
        b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
    }
    p
}

/// x^(2^k) modulo the CRC-32 polynomial, for k in 0..32.
const X2N: [u32; 32] = {
    let mut t = [0u32; 32];
    let mut p: u32 = 1 << 30; // x^1
    t[0] = p;
    let mut n = 1;
    while n < 32 {
        p = multmodp(p, p);
        t[n] = p;
        n += 1;
    }
    t
};

/// The CRC-32 of `a || b` from `crc(a)`, `crc(b)` and `len(b)` (zlib's `crc32_combine`).
#[cfg(test)]
fn crc32_combine(crc_a: u32, crc_b: u32, len_b: u64) -> u32 {
    multmodp(x8nmodp(len_b), crc_a) ^ crc_b
}

/// x^(8 n) modulo the CRC-32 polynomial: a shift by `n` bytes.
fn x8nmodp(mut n: u64) -> u32 {
    let mut p: u32 = 1 << 31; // x^0
    let mut k = 3usize;
    while n != 0 {
        if n & 1 != 0 {
            p = multmodp(X2N[k & 31], p);
        }
        n >>= 1;
        k += 1;
    }
    p
}

/// Compresses all of `input` into `out` (growing it), then flushes as asked.
fn deflate(
    c: &mut flate2::Compress,
    mut input: &[u8],
    out: &mut Vec<u8>,
    flush: flate2::FlushCompress,
) {
    loop {
        if out.capacity() - out.len() < 4096 {
            out.reserve(out.len().max(16 * 1024));
        }
        let before = c.total_in();
        let status = c
            .compress_vec(input, out, flush)
            .expect("deflating into memory cannot fail");
        input = &input[(c.total_in() - before) as usize..];
        let room_left = out.len() < out.capacity();
        match status {
            flate2::Status::StreamEnd => break,
            _ if input.is_empty() && room_left && flush != flate2::FlushCompress::Finish => break,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn crc_combine_matches_the_crc_of_the_concatenation() {
        let a = b"hello, ".repeat(1000);
        let b = b"world\n".repeat(777);
        let whole = [a.clone(), b.clone()].concat();
        assert_eq!(
            crc32_combine(crc32fast::hash(&a), crc32fast::hash(&b), b.len() as u64),
            crc32fast::hash(&whole)
        );
        assert_eq!(
            crc32_combine(0, crc32fast::hash(&b), b.len() as u64),
            crc32fast::hash(&b)
        );
        assert_eq!(
            crc32_combine(crc32fast::hash(&a), 0, 0),
            crc32fast::hash(&a)
        );
    }

    #[test]
    fn fragments_splice_into_one_valid_member() {
        let parts: Vec<String> = (0..50)
            .map(|p| {
                (0..p * 37)
                    .map(|i| format!("m{{a=\"{p}-{i}\"}} {i}\n"))
                    .collect()
            })
            .collect();
        let frags: Vec<Fragment> = parts.iter().map(|p| Fragment::new(p.as_bytes())).collect();
        let refs: Vec<&Fragment> = frags.iter().filter(|f| f.len > 0).collect();
        let g = Gzipped::from_fragments(&refs);
        let gz = g.finish(b"tail 1\n");
        let mut out = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut out)
            .unwrap();
        assert!(out == format!("{}tail 1\n", parts.concat()));
    }

    #[test]
    fn a_reused_compressor_refers_to_nothing_before_its_input() {
        // The same text twice on one thread: had the compressor kept its window, the second
        // fragment would be back-references into the first, and it could not stand alone or
        // after another group (the cache splices groups in any combination).
        let text: String = (0..400).map(|i| format!("m{{a=\"{i}\"}} {i}\n")).collect();
        let other = Fragment::new(b"other_family 1\n");
        let first = Fragment::new(text.as_bytes());
        let second = Fragment::new(text.as_bytes());
        assert_eq!(first.data, second.data, "the same state for the same text");
        for frags in [vec![&second], vec![&other, &second]] {
            let gz = Gzipped::from_fragments(&frags).finish(b"");
            let mut out = String::new();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_string(&mut out)
                .unwrap();
            let expected = if frags.len() == 1 {
                text.clone()
            } else {
                format!("other_family 1\n{text}")
            };
            assert!(out == expected);
        }
    }

    #[test]
    fn spliced_gzip_is_one_valid_member() {
        let big: String = (0..20_000)
            .map(|i| format!("metric_{}{{a=\"{i}\"}} {i}\n", i % 7))
            .collect();
        let g = Gzipped::new(big.as_bytes());
        for tail in ["", "process_open_fds 12\n", &"x".repeat(100_000)] {
            let gz = g.finish(tail.as_bytes());
            let mut out = String::new();
            // GzDecoder reads one member only: the splice must be a single member.
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_string(&mut out)
                .unwrap();
            assert_eq!(out.len(), big.len() + tail.len());
            assert!(out == format!("{big}{tail}"));
        }
        assert!(
            g.prefix[0].len() < big.len() / 4,
            "compresses: {} of {}",
            g.prefix[0].len(),
            big.len()
        );
    }
}
