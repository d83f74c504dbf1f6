//! What the token guarantees about the keys: the issuer key's value cannot be read, it cannot
//! encrypt, the derivation chain gives the published check values, and the ceremony tool imports
//! from components with check values. Also documents SoftHSM's known weakness (docs/hsm.md).

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectHandle};
use cryptoki::session::Session;
use hsm::ceremony::parse_component;
use hsm::emv::{IccMkOption, icc_mk_data};
use hsm::pkcs11::{derive_des2, find_token_key};
use hsm::testing::{TEST_IMK, TEST_IMK_LABEL, TestToken};
use hsm::{CardData, HsmError};

fn check_value(s: &Session, h: ObjectHandle) -> String {
    let attrs = s.get_attributes(h, &[AttributeType::CheckValue]).unwrap();
    match attrs.as_slice() {
        [Attribute::CheckValue(v)] => hex::encode_upper(v),
        other => panic!("no check value: {other:?}"),
    }
}

fn imk(token: &TestToken, f: impl FnOnce(&Session, ObjectHandle)) {
    token
        .admin()
        .with_session(|s| {
            let h = find_token_key(s, TEST_IMK_LABEL)?.expect("test IMK");
            f(s, h);
            Ok::<(), HsmError>(())
        })
        .unwrap();
}

#[test]
fn the_issuer_key_value_cannot_be_read_and_it_cannot_encrypt() {
    let token = TestToken::with_test_keys();
    imk(&token, |s, h| {
        // The value is never returned (CKR_ATTRIBUTE_SENSITIVE or simply absent).
        match s.get_attributes(h, &[AttributeType::Value]) {
            Ok(attrs) => assert!(
                !attrs.iter().any(|a| matches!(a, Attribute::Value(_))),
                "key value readable"
            ),
            Err(e) => assert!(
                e.to_string().contains("sensitive") || e.to_string().contains("Sensitive"),
                "{e}"
            ),
        }
        let flags = s
            .get_attributes(h, &[AttributeType::Sensitive, AttributeType::Extractable])
            .unwrap();
        assert!(flags.contains(&Attribute::Sensitive(true)));
        assert!(flags.contains(&Attribute::Extractable(false)));
        // Encrypting with it is refused.
        assert!(s.encrypt(&Mechanism::Des3Ecb, h, &[0u8; 8]).is_err());
        // Turning ENCRYPT on does not help either: the allowed mechanisms are derivation only.
        let _ = s.update_attributes(h, &[Attribute::Encrypt(true)]);
        assert!(s.encrypt(&Mechanism::Des3Ecb, h, &[0u8; 8]).is_err());
        // And it can never become extractable.
        assert!(
            s.update_attributes(h, &[Attribute::Extractable(true)])
                .is_err()
        );
        assert!(
            s.update_attributes(h, &[Attribute::Sensitive(false)])
                .is_err()
        );
    });
}

#[test]
fn the_chain_inside_the_token_gives_the_published_check_values() {
    let token = TestToken::with_test_keys();
    let y = CardData::new("1234567890123456", 0)
        .unwrap()
        .icc_mk_y(IccMkOption::A);
    // KCV = 3DES-ECB(key, zero block), computed by the token. (SoftHSM's CKA_CHECK_VALUE of a
    // *derived* key is not its KCV: only imported keys carry a true one, see docs/hsm.md.)
    let kcv =
        |s: &Session, k| hex::encode_upper(s.encrypt(&Mechanism::Des3Ecb, k, &[0u8; 8]).unwrap());
    imk(&token, |s, h| {
        assert!(check_value(s, h).starts_with("08D7B4"), "IMK KCV");
        let mk = derive_des2(s, h, &icc_mk_data(&y), true, true).unwrap();
        assert!(kcv(s, mk).starts_with("BAB02F"), "MK {}", kcv(s, mk));
        let common = *b"\x00\x1C\xF0\x00\x00\x00\x00\x00\x00\x1C\x0F\x00\x00\x00\x00\x00";
        let sk = derive_des2(s, mk, &common, false, true).unwrap();
        assert!(kcv(s, sk).starts_with("22C810"), "SK {}", kcv(s, sk));
        let mc = *b"\x00\x1C\xF0\x00\xAB\xCD\xEF\x12\x00\x1C\x0F\x00\xAB\xCD\xEF\x12";
        let sk_mc = derive_des2(s, mk, &mc, false, true).unwrap();
        assert!(
            kcv(s, sk_mc).starts_with("2FD528"),
            "SK mc {}",
            kcv(s, sk_mc)
        );
        // Derived keys are sensitive and non-extractable too.
        let flags = s
            .get_attributes(sk, &[AttributeType::Sensitive, AttributeType::Extractable])
            .unwrap();
        assert!(flags.contains(&Attribute::Sensitive(true)));
        assert!(flags.contains(&Attribute::Extractable(false)));
        for k in [mk, sk, sk_mc] {
            s.destroy_object(k).unwrap();
        }
    });
}

/// The limit stated in docs/hsm.md: on SoftHSM (no CKA_DERIVE_TEMPLATE) a PIN holder can derive
/// an *extractable* card master key and read it. If this test ever fails, the token got safer:
/// update the documentation.
#[test]
fn softhsm_lets_a_pin_holder_derive_an_extractable_card_key() {
    let token = TestToken::with_test_keys();
    imk(&token, |s, h| {
        use cryptoki::mechanism::vendor_defined::VendorDefinedMechanism;
        #[repr(C)]
        struct Params {
            data: *const u8,
            len: std::ffi::c_ulong,
        }
        let data = [0x11u8; 16];
        let params = Params {
            data: data.as_ptr(),
            len: 16,
        };
        let mech = Mechanism::VendorDefined(VendorDefinedMechanism::new(
            hsm::pkcs11::des3_ecb_encrypt_data(),
            Some(&params),
        ));
        let template = [
            Attribute::Class(cryptoki::object::ObjectClass::SECRET_KEY),
            Attribute::KeyType(cryptoki::object::KeyType::DES2),
            Attribute::Token(false),
            Attribute::Sensitive(false),
            Attribute::Extractable(true),
        ];
        let k = s.derive_key(&mech, h, &template).unwrap();
        let attrs = s.get_attributes(k, &[AttributeType::Value]).unwrap();
        assert!(matches!(attrs.as_slice(), [Attribute::Value(v)] if v.len() == 16));
        s.destroy_object(k).unwrap();
    });
}

#[test]
fn ceremony_imports_from_components_with_check_values_and_lists_them() {
    let token = TestToken::new();
    let admin = token.admin();
    // Components of the published test IMK: C1 random-looking, C2 = IMK xor C1.
    let c1 = parse_component("1111111111111111 2222222222222222").unwrap();
    let mut c2 = c1.clone();
    for (b, k) in c2.iter_mut().zip(TEST_IMK) {
        *b ^= k;
    }
    let report = admin
        .import_from_components(TEST_IMK_LABEL, &[c1.clone(), c2])
        .unwrap();
    assert_eq!(report.component_kcvs.len(), 2);
    // The same key imported directly has the same KCV: the XOR is right.
    let direct = TestToken::new().import_key("direct", &TEST_IMK);
    assert_eq!(report.kcv, direct);
    assert_eq!(
        report.kcv,
        admin.kcv_of(&zeroize::Zeroizing::new(TEST_IMK)).unwrap()
    );
    // A second import under the same label is refused.
    let c3 = parse_component("33333333333333334444444444444444").unwrap();
    let err = admin
        .import_from_components(TEST_IMK_LABEL, &[c1, c3])
        .unwrap_err();
    assert!(err.to_string().contains("exists already"), "{err}");

    let list = admin.list().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].label, TEST_IMK_LABEL);
    assert_eq!(list[0].kcv, Some(report.kcv));
    assert!(list[0].sensitive && !list[0].extractable && !list[0].encrypt);
}
