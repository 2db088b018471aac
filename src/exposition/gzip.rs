//! Gzip with a cached prefix: the snapshot part is compressed once, and each scrape appends
//! only its own few kilobytes to the same gzip member.
//!
//! Byte-level deflate/CRC work only; it knows nothing about metrics or about when the prefix
//! is rebuilt ([`super::cache`]).

use bytes::Bytes;
#[cfg(test)]
use bytes::BytesMut;

/// The start of a gzip member: header plus deflate blocks of `plain`, ended with a sync flush
/// (byte-aligned, not final), and the running CRC. [`Gzipped::finish`] appends the per-scrape
/// bytes as further deflate blocks from a fresh compressor (which refers back to nothing before
/// its own input) with the final-block flag, then the trailer: one valid gzip member, so every
/// client can read it, for the cost of compressing a few kilobytes per scrape.
pub(super) struct Gzipped {
    pub(super) prefix: Bytes,
    crc: crc32fast::Hasher,
    len: usize,
}

impl Gzipped {
    pub(super) fn new(plain: &[u8]) -> Self {
        // ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL=0 OS=unknown
        let mut out = Vec::with_capacity(plain.len() / 4 + 64);
        out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
        let mut c = flate2::Compress::new(flate2::Compression::default(), false);
        deflate(&mut c, plain, &mut out, flate2::FlushCompress::Sync);
        let mut crc = crc32fast::Hasher::new();
        crc.update(plain);
        Gzipped {
            prefix: Bytes::from(out),
            crc,
            len: plain.len(),
        }
    }

    #[cfg(test)]
    fn finish(&self, tail: &[u8]) -> Bytes {
        let mut out = BytesMut::from(&self.prefix[..]);
        out.extend_from_slice(&self.finish_tail(tail));
        out.freeze()
    }

    /// What follows the cached prefix: `tail` as final deflate blocks, then the trailer.
    pub(super) fn finish_tail(&self, tail: &[u8]) -> Bytes {
        let mut out = Vec::with_capacity(tail.len() / 2 + 64);
        let mut c = flate2::Compress::new(flate2::Compression::fast(), false);
        deflate(&mut c, tail, &mut out, flate2::FlushCompress::Finish);
        let mut crc = self.crc.clone();
        crc.update(tail);
        out.extend_from_slice(&crc.finalize().to_le_bytes());
        // ISIZE is the length modulo 2^32 (RFC 1952).
        out.extend_from_slice(&((self.len + tail.len()) as u32).to_le_bytes());
        Bytes::from(out)
    }
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
            g.prefix.len() < big.len() / 4,
            "compresses: {} of {}",
            g.prefix.len(),
            big.len()
        );
    }
}
