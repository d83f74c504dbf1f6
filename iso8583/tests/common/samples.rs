//! Realistic messages for tests and the benchmark (test data only: PANs are test card numbers).

use iso8583::{MessageBuilder, Mti, tlv};

fn mti(v: u16) -> Mti {
    Mti::from_u16(v).expect("valid MTI")
}

/// DE 55 of a chip request: 16 EMV tags, about 180 bytes.
pub fn chip_de55() -> Vec<u8> {
    let mut w = tlv::Writer::new();
    w.put(0x9F26, &[0x8A, 0x1B, 0x3C, 0x4D, 0x5E, 0x6F, 0x70, 0x81]) // ARQC
        .put(0x9F27, &[0x80]) // CID
        .put(0x9F10, &[0x06, 0x01, 0x0A, 0x03, 0xA0, 0x00, 0x00]) // IAD
        .put(0x9F37, &[0x1A, 0x2B, 0x3C, 0x4D]) // unpredictable number
        .put(0x9F36, &[0x00, 0x2A]) // ATC
        .put(0x95, &[0x00, 0x00, 0x00, 0x80, 0x00]) // TVR
        .put(0x9A, &[0x26, 0x11, 0x22]) // date
        .put(0x9C, &[0x00]) // type
        .put(0x9F02, &[0x00, 0x00, 0x00, 0x01, 0x25, 0x00]) // amount
        .put(0x5F2A, &[0x09, 0x78]) // currency
        .put(0x82, &[0x19, 0x80]) // AIP
        .put(0x9F1A, &[0x02, 0x50]) // country
        .put(0x9F03, &[0, 0, 0, 0, 0, 0]) // other amount
        .put(0x9F33, &[0xE0, 0xF8, 0xC8]) // terminal capabilities
        .put(0x9F34, &[0x42, 0x03, 0x00]) // CVM results
        .put(0x84, &[0xA0, 0x00, 0x00, 0x00, 0x04, 0x10, 0x10]); // AID
    w.into_bytes()
}

fn base_0100(b: &mut MessageBuilder, pan: &str, entry: &str) {
    b.set(2, pan)
        .set(3, "000000")
        .set(4, "000000012500")
        .set(7, "1122143015")
        .set(11, "004711")
        .set(12, "153015")
        .set(13, "1122")
        .set(14, "2812")
        .set(18, "5411")
        .set(19, "250")
        .set(22, entry)
        .set(32, "123456")
        .set(33, "654321")
        .set(37, "532614004711")
        .set(41, "TERM0001")
        .set(42, "MERCHANT0000001")
        .set(43, "SUPERMARCHE DU COIN    PARIS        FRA")
        .set(49, "978")
        .set(61, "00000000002500075001")
        .set(63, "MCC123456789");
}

/// The benchmark mix: chip 0100, contactless 0100, magstripe with PIN, e-commerce with DE 48,
/// an 0110, an 0400, its 0410, an 0800.
pub fn mix() -> Vec<MessageBuilder> {
    let mut chip = MessageBuilder::new(mti(100));
    base_0100(&mut chip, "5413330089010012", "051");
    chip.set(23, "001").set(55, chip_de55());

    let mut contactless = MessageBuilder::new(mti(100));
    base_0100(&mut contactless, "5413330089010020", "071");
    let mut w = tlv::Writer::new();
    w.put(0x9F26, &[1, 2, 3, 4, 5, 6, 7, 8])
        .put(0x9F27, &[0x80])
        .put(0x9F36, &[0x00, 0x07])
        .put(0x9F37, &[9, 8, 7, 6])
        .put(0x9F02, &[0, 0, 0, 0, 0x25, 0])
        .put(0x9F6E, &[0x20, 0x70, 0, 0]);
    contactless.set(23, "000").set(55, w.into_bytes());

    let mut magstripe = MessageBuilder::new(mti(100));
    base_0100(&mut magstripe, "5413330089010038", "021");
    magstripe
        .set(35, "5413330089010038=28122011234567890")
        .set(52, [0x3A, 0x9B, 0x0C, 0x1D, 0x2E, 0x3F, 0x40, 0x51])
        .set(53, "2001010100000000");

    let mut ecom = MessageBuilder::new(mti(100));
    base_0100(&mut ecom, "5413330089010046", "812");
    let mut d = iso8583::de48::Writer::new(b'T');
    d.put(42, b"210")
        .unwrap()
        .put(43, b"jJ5vz8n4Yk3Lm0PqRsTuVwXyZ1aB")
        .unwrap()
        .put(92, b"123")
        .unwrap();
    ecom.set(48, d.into_bytes());

    let mut resp = MessageBuilder::new(mti(110));
    resp.set(2, "5413330089010012")
        .set(3, "000000")
        .set(4, "000000012500")
        .set(7, "1122143015")
        .set(11, "004711")
        .set(32, "123456")
        .set(33, "654321")
        .set(37, "532614004711")
        .set(38, "A1B2C3")
        .set(39, "00")
        .set(41, "TERM0001")
        .set(42, "MERCHANT0000001")
        .set(49, "978")
        .set(55, [0x91, 0x0A, 1, 2, 3, 4, 5, 6, 7, 8, 0x30, 0x30])
        .set(63, "MCC123456789");

    let mut rev = MessageBuilder::new(mti(400));
    rev.set(2, "5413330089010012")
        .set(3, "000000")
        .set(4, "000000012500")
        .set(7, "1122143520")
        .set(11, "004712")
        .set(32, "123456")
        .set(33, "654321")
        .set(37, "532614004711")
        .set(39, "17")
        .set(41, "TERM0001")
        .set(49, "978")
        .set(90, "010000471111221430150000012345600000654321")
        .set(95, "000000005000000000005000000000005000000000");

    let mut rev_resp = MessageBuilder::new(mti(410));
    rev_resp
        .set(2, "5413330089010012")
        .set(3, "000000")
        .set(4, "000000012500")
        .set(7, "1122143520")
        .set(11, "004712")
        .set(32, "123456")
        .set(33, "654321")
        .set(37, "532614004711")
        .set(39, "00")
        .set(41, "TERM0001")
        .set(49, "978")
        .set(90, "010000471111221430150000012345600000654321");

    let mut echo = MessageBuilder::new(mti(800));
    echo.set(7, "1122143000")
        .set(11, "000042")
        .set(33, "654321")
        .set(70, "301");

    vec![
        chip,
        contactless,
        magstripe,
        ecom,
        resp,
        rev,
        rev_resp,
        echo,
    ]
}
