//! DE 48 (additional data, private) as Mastercard lays it out: one transaction category code
//! character, then subelements of a 2-digit tag, a 2-digit length and the value. The reader works
//! on the field's logical (ASCII) value and borrows it; the writer builds that value.

use std::fmt;

/// One subelement. Its `Debug` shows the tag and the length, never the value (SE 92 is the CVC2).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Subelement<'a> {
    /// Tag 0..=99.
    pub tag: u8,
    /// The value.
    pub value: &'a [u8],
}

/// Why DE 48 could not be read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct De48Error {
    /// Offset in the field's value.
    pub offset: usize,
    /// What was wrong.
    pub kind: De48ErrorKind,
}

/// What was wrong with DE 48.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum De48ErrorKind {
    /// The field is empty: no transaction category code.
    Empty,
    /// A tag or length that is not 2 digits.
    NotDigits,
    /// The data ends inside a subelement.
    Truncated,
    /// Writer: a tag over 99 or a value over 99 bytes.
    OutOfRange,
}

impl fmt::Display for De48Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            De48ErrorKind::Empty => "no transaction category code",
            De48ErrorKind::NotDigits => "subelement tag or length is not 2 digits",
            De48ErrorKind::Truncated => "data ends inside a subelement",
            De48ErrorKind::OutOfRange => "tag or length over 99",
        };
        write!(f, "field 48 at character {}: {what}", self.offset)
    }
}

impl std::error::Error for De48Error {}

/// Reads DE 48. Iterating yields subelements in order; after the first error, nothing more. Its
/// `Debug` shows lengths and the position, never the characters.
#[derive(Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    failed: bool,
}

impl fmt::Debug for Subelement<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subelement")
            .field("tag", &self.tag)
            .field("len", &self.value.len())
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

fn two_digits(d: &[u8]) -> Option<u8> {
    match d {
        [a @ b'0'..=b'9', b @ b'0'..=b'9'] => Some((a - b'0') * 10 + (b - b'0')),
        _ => None,
    }
}

impl<'a> Reader<'a> {
    /// A reader over DE 48's logical value.
    pub fn new(data: &'a [u8]) -> Reader<'a> {
        Reader {
            data,
            pos: 1,
            failed: false,
        }
    }

    /// The transaction category code (first character).
    pub fn tcc(&self) -> Result<u8, De48Error> {
        self.data.first().copied().ok_or(De48Error {
            offset: 0,
            kind: De48ErrorKind::Empty,
        })
    }

    /// The first subelement with `tag`.
    pub fn get(&self, tag: u8) -> Result<Option<&'a [u8]>, De48Error> {
        for s in self.clone() {
            let s = s?;
            if s.tag == tag {
                return Ok(Some(s.value));
            }
        }
        Ok(None)
    }
}

impl<'a> Iterator for Reader<'a> {
    type Item = Result<Subelement<'a>, De48Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.data.len() {
            return None;
        }
        let p = self.pos;
        let err = |kind| De48Error { offset: p, kind };
        let result = (|| {
            let head = self
                .data
                .get(p..p + 4)
                .ok_or(err(De48ErrorKind::Truncated))?;
            let tag = two_digits(&head[0..2]).ok_or(err(De48ErrorKind::NotDigits))?;
            let len = two_digits(&head[2..4]).ok_or(err(De48ErrorKind::NotDigits))?;
            let end = p + 4 + usize::from(len);
            let value = self
                .data
                .get(p + 4..end)
                .ok_or(err(De48ErrorKind::Truncated))?;
            Ok((Subelement { tag, value }, end))
        })();
        match result {
            Ok((s, end)) => {
                self.pos = end;
                Some(Ok(s))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Builds DE 48's logical value. Its `Debug` shows the length only.
#[derive(Clone)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// Starts with the transaction category code.
    pub fn new(tcc: u8) -> Writer {
        Writer { buf: vec![tcc] }
    }

    /// Appends subelement `tag` (0..=99) with `value` (at most 99 characters).
    pub fn put(&mut self, tag: u8, value: &[u8]) -> Result<&mut Writer, De48Error> {
        if tag > 99 || value.len() > 99 {
            return Err(De48Error {
                offset: self.buf.len(),
                kind: De48ErrorKind::OutOfRange,
            });
        }
        let len = value.len() as u8;
        self.buf.extend_from_slice(&[
            b'0' + tag / 10,
            b'0' + tag % 10,
            b'0' + len / 10,
            b'0' + len % 10,
        ]);
        self.buf.extend_from_slice(value);
        Ok(self)
    }

    /// The value for DE 48.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_tags_and_lengths_never_values() {
        // SE 92 is the CVC2; SE 42 the security level.
        let mut w = Writer::new(b'R');
        w.put(42, b"210").unwrap().put(92, b"737").unwrap();
        let value = w.clone().into_bytes();
        let reader = Reader::new(&value);
        let items: Vec<Subelement<'_>> = reader.clone().map(Result::unwrap).collect();
        for debug in [
            format!("{reader:?}"),
            format!("{items:?}"),
            format!("{:?}", items[1]),
            format!("{w:?}"),
        ] {
            for secret in [&b"737"[..], b"210", &value] {
                let list = format!("{secret:?}");
                assert!(!debug.contains(&list[1..list.len() - 1]), "{debug}");
                assert!(
                    !debug.contains(std::str::from_utf8(secret).unwrap()),
                    "{debug}"
                );
            }
        }
        let debug = format!("{:?}", items[1]);
        assert!(debug.contains("92") && debug.contains('3'), "{debug}");
    }

    #[test]
    fn roundtrip() {
        let mut w = Writer::new(b'R');
        w.put(42, b"210")
            .unwrap()
            .put(92, b"123")
            .unwrap()
            .put(0, b"")
            .unwrap();
        let v = w.into_bytes();
        assert_eq!(v, b"R420321092031230000");
        let r = Reader::new(&v);
        assert_eq!(r.tcc(), Ok(b'R'));
        let all: Vec<_> = r.clone().collect::<Result<_, _>>().unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(r.get(92), Ok(Some(&b"123"[..])));
        assert_eq!(r.get(61), Ok(None));
    }

    #[test]
    fn errors() {
        assert_eq!(
            Reader::new(b"").tcc().unwrap_err().kind,
            De48ErrorKind::Empty
        );
        let e = Reader::new(b"R4A03abc").get(1).unwrap_err();
        assert_eq!(
            e,
            De48Error {
                offset: 1,
                kind: De48ErrorKind::NotDigits
            }
        );
        let e = Reader::new(b"R4203ab").get(1).unwrap_err();
        assert_eq!(
            e,
            De48Error {
                offset: 1,
                kind: De48ErrorKind::Truncated
            }
        );
        let e = Reader::new(b"R420").get(1).unwrap_err();
        assert_eq!(e.kind, De48ErrorKind::Truncated);
        assert_eq!(
            Writer::new(b'R').put(100, b"").unwrap_err().kind,
            De48ErrorKind::OutOfRange
        );
        assert_eq!(
            Writer::new(b'R').put(1, &[b'x'; 100]).unwrap_err().kind,
            De48ErrorKind::OutOfRange
        );
    }
}
