//! BER-TLV as EMV uses it in DE 55: multi-byte tags, short and long-form lengths, constructed
//! tags, zero-length values. The reader borrows its input and never allocates; the writer appends
//! to one `Vec`. Tags are numbers made of their bytes (`0x9F26`, `0xDF8116`), at most 4 bytes.
//! Indefinite lengths (`0x80`) and lengths over 4 bytes are refused; nothing here can panic.
//!
//! This is the project's only BER-TLV reader: the codec reads DE 55 with it and the `hsm` crate
//! uses it for the same bytes. **Padding rule:** a `00` or `FF` byte where a tag would begin is
//! padding and is skipped, before, between and after elements, on every level. Neither byte can
//! begin a tag (ISO/IEC 7816-4 reserves both as filler, and EMV allows `00` fill between data
//! objects), so skipping them never hides an element. The writer never writes padding.

use std::fmt;

/// A tag, its bytes read as a big-endian number (`9F26` → `0x9F26`).
pub type Tag = u32;

/// One element. Its `Debug` shows the tag, the length and the offset, never the value (DE 55 can
/// carry track 2 equivalent data).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    /// The tag.
    pub tag: Tag,
    /// The value bytes.
    pub value: &'a [u8],
    /// Offset of the tag's first byte in the reader's input.
    pub offset: usize,
}

impl<'a> Tlv<'a> {
    /// True for a constructed tag (bit 6 of the first tag byte): the value is itself TLV.
    pub fn is_constructed(&self) -> bool {
        first_byte(self.tag) & 0x20 != 0
    }

    /// A reader over the children of a constructed element (`None` when primitive).
    pub fn children(&self) -> Option<Reader<'a>> {
        self.is_constructed().then(|| Reader::new(self.value))
    }
}

impl fmt::Debug for Tlv<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tlv")
            .field("tag", &format_args!("{:02X}", self.tag))
            .field("len", &self.value.len())
            .field("offset", &self.offset)
            .finish()
    }
}

impl fmt::Debug for Reader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("len", &self.data.len())
            .field("pos", &self.pos)
            .field("failed", &self.failed)
            .finish()
    }
}

impl fmt::Debug for Writer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer")
            .field("len", &self.buf.len())
            .finish()
    }
}

fn first_byte(tag: Tag) -> u8 {
    let bytes = tag.to_be_bytes();
    bytes.iter().copied().find(|&b| b != 0).unwrap_or(0)
}

/// Why TLV data could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlvError {
    /// Offset in the reader's input.
    pub offset: usize,
    /// What was wrong.
    pub kind: TlvErrorKind,
}

/// What was wrong with TLV bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlvErrorKind {
    /// The data ends inside a tag, a length or a value.
    Truncated,
    /// A tag longer than 4 bytes.
    TagTooLong,
    /// Indefinite length (`0x80`) or a long form with more than 4 length bytes.
    BadLength,
}

impl fmt::Display for TlvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            TlvErrorKind::Truncated => "data ends inside an element",
            TlvErrorKind::TagTooLong => "tag longer than 4 bytes",
            TlvErrorKind::BadLength => "indefinite or over-long length",
        };
        write!(f, "TLV at byte {}: {what}", self.offset)
    }
}

impl std::error::Error for TlvError {}

/// Iterates over the elements of one level. After the first error it yields nothing more. Its
/// `Debug` shows lengths and the position, never the bytes.
#[derive(Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> Reader<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Reader<'a> {
        Reader {
            data,
            pos: 0,
            failed: false,
        }
    }

    /// The first element with `tag` on this level.
    pub fn find(&self, tag: Tag) -> Result<Option<Tlv<'a>>, TlvError> {
        for item in self.clone() {
            let item = item?;
            if item.tag == tag {
                return Ok(Some(item));
            }
        }
        Ok(None)
    }

    /// Checks the whole level, and every constructed element below it, without allocating.
    pub fn validate(&self) -> Result<usize, TlvError> {
        let mut count = 0;
        for item in self.clone() {
            let item = item?;
            count += 1;
            if let Some(children) = item.children() {
                children.validate().map_err(|e| TlvError {
                    offset: e.offset + (item.value.as_ptr() as usize - self.data.as_ptr() as usize),
                    kind: e.kind,
                })?;
            }
        }
        Ok(count)
    }

    fn read(&mut self) -> Result<Tlv<'a>, TlvErrorKind> {
        let d = self.data;
        let start = self.pos;
        let mut p = start;
        let first = *d.get(p).ok_or(TlvErrorKind::Truncated)?;
        p += 1;
        let mut tag = Tag::from(first);
        if first & 0x1F == 0x1F {
            loop {
                let b = *d.get(p).ok_or(TlvErrorKind::Truncated)?;
                p += 1;
                if p - start > 4 {
                    return Err(TlvErrorKind::TagTooLong);
                }
                tag = tag << 8 | Tag::from(b);
                if b & 0x80 == 0 {
                    break;
                }
            }
        }
        let l = *d.get(p).ok_or(TlvErrorKind::Truncated)?;
        p += 1;
        let len = if l < 0x80 {
            usize::from(l)
        } else {
            let n = usize::from(l & 0x7F);
            if n == 0 || n > 4 {
                return Err(TlvErrorKind::BadLength);
            }
            let bytes = d.get(p..p + n).ok_or(TlvErrorKind::Truncated)?;
            p += n;
            bytes
                .iter()
                .fold(0usize, |acc, &b| acc << 8 | usize::from(b))
        };
        let end = p.checked_add(len).ok_or(TlvErrorKind::Truncated)?;
        let value = d.get(p..end).ok_or(TlvErrorKind::Truncated)?;
        self.pos = end;
        Ok(Tlv {
            tag,
            value,
            offset: start,
        })
    }
}

impl<'a> Iterator for Reader<'a> {
    type Item = Result<Tlv<'a>, TlvError>;

    fn next(&mut self) -> Option<Self::Item> {
        while matches!(self.data.get(self.pos), Some(0x00 | 0xFF)) {
            self.pos += 1;
        }
        if self.failed || self.pos >= self.data.len() {
            return None;
        }
        let offset = self.pos;
        match self.read() {
            Ok(t) => Some(Ok(t)),
            Err(kind) => {
                self.failed = true;
                Some(Err(TlvError { offset, kind }))
            }
        }
    }
}

/// Appends elements in minimal DER form (shortest lengths). Its `Debug` shows the length only.
#[derive(Default, Clone)]
pub struct Writer {
    buf: Vec<u8>,
}

fn tag_bytes(tag: Tag) -> ([u8; 4], usize) {
    let b = tag.to_be_bytes();
    let skip = b.iter().take(3).take_while(|&&x| x == 0).count();
    (b, skip)
}

fn put_len(buf: &mut Vec<u8>, len: usize) {
    match len {
        0..=0x7F => buf.push(len as u8),
        0x80..=0xFF => buf.extend_from_slice(&[0x81, len as u8]),
        0x100..=0xFFFF => buf.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]),
        0x1_0000..=0xFF_FFFF => {
            buf.extend_from_slice(&[0x83, (len >> 16) as u8, (len >> 8) as u8, len as u8])
        }
        _ => {
            // Values over 4 GiB cannot exist in a message; saturate rather than wrap.
            let l = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
            buf.extend_from_slice(&[0x84, l[0], l[1], l[2], l[3]]);
        }
    }
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Writer {
        Writer::default()
    }

    /// Appends a primitive element.
    pub fn put(&mut self, tag: Tag, value: &[u8]) -> &mut Writer {
        let (b, skip) = tag_bytes(tag);
        self.buf.extend_from_slice(&b[skip..]);
        put_len(&mut self.buf, value.len());
        self.buf.extend_from_slice(value);
        self
    }

    /// Appends a constructed element whose children `build` writes.
    pub fn constructed(&mut self, tag: Tag, build: impl FnOnce(&mut Writer)) -> &mut Writer {
        let mut inner = Writer::new();
        build(&mut inner);
        self.put(tag, &inner.buf)
    }

    /// The bytes written.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The bytes written.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// How a value's bytes could show up in `{:?}`: hex either case, raw, or a byte list.
    fn shows(debug: &str, value: &[u8]) -> bool {
        let list = format!("{value:?}");
        let inner = &list[1..list.len() - 1];
        debug.contains(&hex::encode(value))
            || debug.contains(&hex::encode_upper(value))
            || debug.contains(&String::from_utf8_lossy(value).into_owned())
            || debug.contains(inner)
    }

    #[test]
    fn debug_shows_tags_and_lengths_never_values() {
        // 57 (track 2 equivalent data) inside 70, and 9F26.
        let track2 = hex("5413330089010434D2812201");
        let arqc = hex("1122334455667788");
        let mut w = Writer::new();
        w.constructed(0x70, |w| {
            w.put(0x57, &track2);
        })
        .put(0x9F26, &arqc);
        let data = w.as_bytes().to_vec();
        let reader = Reader::new(&data);
        let items: Vec<Tlv<'_>> = reader.clone().map(Result::unwrap).collect();
        let child = items[0].children().unwrap().next().unwrap().unwrap();
        for debug in [
            format!("{reader:?}"),
            format!("{:?}", items),
            format!("{child:?}"),
            format!("{:?}", items[0].children().unwrap()),
            format!("{w:?}"),
        ] {
            assert!(!shows(&debug, &track2), "{debug}");
            assert!(!shows(&debug, &arqc), "{debug}");
            assert!(!shows(&debug, &data), "{debug}");
        }
        let debug = format!("{child:?}");
        assert!(debug.contains("57") && debug.contains("12"), "{debug}");
        let debug = format!("{:?}", items[1]);
        assert!(debug.contains("9F26") && debug.contains('8'), "{debug}");
    }

    #[test]
    fn reads_multi_byte_tags_and_lengths() {
        let d = hex("9F2608112233445566778882025C00DF811601AA5F2A020978");
        let items: Vec<_> = Reader::new(&d).collect::<Result<_, _>>().unwrap();
        assert_eq!(items.len(), 4);
        assert_eq!(items[0].tag, 0x9F26);
        assert_eq!(items[0].value, &hex("1122334455667788")[..]);
        assert_eq!(items[1].tag, 0x82);
        assert_eq!(items[2].tag, 0xDF8116);
        assert_eq!(items[2].value, &[0xAA]);
        assert_eq!(items[3].offset, 20);
    }

    #[test]
    fn long_form_and_zero_length() {
        let d = hex("9F1081030102039F3700");
        let items: Vec<_> = Reader::new(&d).collect::<Result<_, _>>().unwrap();
        assert_eq!(items[0].value, &[1, 2, 3]);
        assert_eq!(items[1].value, &[] as &[u8]);
        let mut w = Writer::new();
        w.put(0x9F10, &[0u8; 200]);
        assert_eq!(&w.as_bytes()[..4], &hex("9F1081C8")[..]);
    }

    #[test]
    fn constructed_tags_nest() {
        let mut w = Writer::new();
        w.constructed(0x70, |w| {
            w.put(0x57, &[0x54, 0x13]).put(0x5F20, b"X");
        });
        let bytes = w.into_bytes();
        assert_eq!(bytes, hex("7008570254135F200158"));
        let outer = Reader::new(&bytes).next().unwrap().unwrap();
        assert!(outer.is_constructed());
        let inner: Vec<_> = outer.children().unwrap().map(|t| t.unwrap().tag).collect();
        assert_eq!(inner, vec![0x57, 0x5F20]);
        assert_eq!(Reader::new(&bytes).validate(), Ok(1));
    }

    #[test]
    fn errors() {
        let e = |s: &str| Reader::new(&hex(s)).find(0xFFFF).unwrap_err();
        assert_eq!(
            e("9F"),
            TlvError {
                offset: 0,
                kind: TlvErrorKind::Truncated
            }
        );
        assert_eq!(
            e("9F2605AABB"),
            TlvError {
                offset: 0,
                kind: TlvErrorKind::Truncated
            }
        );
        assert_eq!(e("8200DF8181818101AA").kind, TlvErrorKind::TagTooLong);
        assert_eq!(e("82008180").kind, TlvErrorKind::BadLength);
        assert_eq!(e("8285FFFFFFFFFF").kind, TlvErrorKind::BadLength);
        assert_eq!(e("82840FFFFFFF").kind, TlvErrorKind::Truncated);
        assert_eq!(e("8200820200").kind, TlvErrorKind::Truncated);
        assert_eq!(e("8200820200").offset, 2);
        // Errors inside a constructed element point into the outer input.
        let bad = hex("5A0112" /* ok */)
            .into_iter()
            .chain(hex("70025701"))
            .collect::<Vec<_>>();
        assert_eq!(Reader::new(&bad).validate().unwrap_err().offset, 5);
    }

    #[test]
    fn padding_bytes_are_skipped_on_every_level() {
        let d = hex("009F360200FF00FF7006FF5A0112FF00FF");
        let items: Vec<_> = Reader::new(&d).collect::<Result<_, _>>().unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].tag, 0x9F36);
        assert_eq!(items[0].value, &[0x00, 0xFF]);
        assert_eq!(items[0].offset, 1);
        assert_eq!(items[1].tag, 0x70);
        let inner: Vec<_> = items[1].children().unwrap().map(|t| t.unwrap()).collect();
        assert_eq!(inner.len(), 1);
        assert_eq!((inner[0].tag, inner[0].value), (0x5A, &[0x12][..]));
        assert_eq!(Reader::new(&d).validate(), Ok(2));
        assert_eq!(Reader::new(&hex("00FF00")).count(), 0);
    }

    #[test]
    fn find_returns_first() {
        let d = hex("9F3602001A9F360200FF");
        assert_eq!(
            Reader::new(&d).find(0x9F36).unwrap().unwrap().value,
            &[0, 0x1A]
        );
        assert_eq!(Reader::new(&d).find(0x91).unwrap(), None);
    }
}
