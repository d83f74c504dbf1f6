//! The network link's framing: each message is preceded by a 2-byte unsigned big-endian length
//! that counts the message bytes, not itself. A `tokio_util` codec, behind the `tokio` feature so
//! the codec core stays free of I/O. A frame longer than the configured maximum means the stream
//! is corrupt: decoding fails with [`FramingError::TooLarge`] and the caller reconnects. Frames of
//! length 0 are passed up as empty messages (the session decides what they mean).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// The default maximum message length (`docs/network.md`, "Framing").
pub const FRAME_LEN_MAX_DEFAULT: usize = 4096;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FramingError {
    /// The length prefix (or a message to send) exceeds the maximum.
    #[error("frame of {len} bytes exceeds the maximum {max}: the stream is corrupt, reconnect")]
    TooLarge {
        /// Length announced or given.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The underlying stream failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// 2-byte big-endian length framing with a maximum frame size.
#[derive(Debug, Clone, Copy)]
pub struct LengthPrefixed {
    max_frame_len: usize,
}

impl LengthPrefixed {
    /// A codec refusing frames longer than `max_frame_len` (capped at 65535).
    pub fn new(max_frame_len: usize) -> LengthPrefixed {
        LengthPrefixed {
            max_frame_len: max_frame_len.min(u16::MAX as usize),
        }
    }

    /// The maximum frame length.
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }
}

impl Default for LengthPrefixed {
    fn default() -> LengthPrefixed {
        LengthPrefixed::new(FRAME_LEN_MAX_DEFAULT)
    }
}

impl Decoder for LengthPrefixed {
    type Item = Bytes;
    type Error = FramingError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FramingError> {
        if src.len() < 2 {
            return Ok(None);
        }
        let len = usize::from(u16::from_be_bytes([src[0], src[1]]));
        if len > self.max_frame_len {
            return Err(FramingError::TooLarge {
                len,
                max: self.max_frame_len,
            });
        }
        if src.len() < 2 + len {
            src.reserve(2 + len - src.len());
            return Ok(None);
        }
        src.advance(2);
        Ok(Some(src.split_to(len).freeze()))
    }
}

impl<T: AsRef<[u8]>> Encoder<T> for LengthPrefixed {
    type Error = FramingError;

    fn encode(&mut self, item: T, dst: &mut BytesMut) -> Result<(), FramingError> {
        let msg = item.as_ref();
        if msg.len() > self.max_frame_len {
            return Err(FramingError::TooLarge {
                len: msg.len(),
                max: self.max_frame_len,
            });
        }
        dst.reserve(2 + msg.len());
        dst.put_u16(msg.len() as u16);
        dst.put_slice(msg);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_frames_across_reads() {
        let mut c = LengthPrefixed::new(10);
        let mut buf = BytesMut::from(&[0u8, 3, b'a'][..]);
        assert!(c.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(b"bc\x00\x00\x00");
        assert_eq!(
            c.decode(&mut buf).unwrap().unwrap(),
            Bytes::from_static(b"abc")
        );
        assert_eq!(c.decode(&mut buf).unwrap().unwrap(), Bytes::new());
        assert!(c.decode(&mut buf).unwrap().is_none());
        assert_eq!(buf.len(), 1);
    }

    #[test]
    fn oversize_is_an_error() {
        let mut c = LengthPrefixed::new(10);
        let mut buf = BytesMut::from(&[0u8, 11][..]);
        assert!(matches!(
            c.decode(&mut buf),
            Err(FramingError::TooLarge { len: 11, max: 10 })
        ));
        let mut out = BytesMut::new();
        assert!(matches!(
            c.encode(&[0u8; 11][..], &mut out),
            Err(FramingError::TooLarge { .. })
        ));
        c.encode(&b"hi"[..], &mut out).unwrap();
        assert_eq!(&out[..], b"\x00\x02hi");
    }
}
