//! The published vectors of docs/cryptograms.md (pyemv's own tests), checked inside
//! SoftHSM2, plus the key-protection properties the issue asks for.

use hsm::emv::tag;
use hsm::pkcs11::Pkcs11Verifier;
use hsm::testing::{
    PUBLISHED_VECTORS as VECTORS, PublishedVector, TEST_IMK_LABEL, TestToken, test_key_sets,
};
use hsm::{ArqcOutcome, AuthorisationResponse, CardData, CryptogramVerifier, EmvData, KeySetId};

fn emv_for(v: &PublishedVector, amount_tweak: bool) -> EmvData {
    let mut tags = v.tags();
    if amount_tweak {
        let amount = tags
            .iter_mut()
            .find(|(t, _)| *t == tag::AMOUNT_AUTHORISED)
            .expect("9F02");
        amount.1[5] ^= 0x01;
    }
    // Through the BER-TLV reader, as DE 55 would arrive.
    let mut de55 = iso8583::tlv::Writer::new();
    for (t, v) in &tags {
        de55.put(*t, v);
    }
    EmvData::from_de55(de55.as_bytes()).unwrap()
}

fn response(v: &PublishedVector) -> AuthorisationResponse {
    v.response()
}

#[test]
fn published_vectors_verify_and_give_the_published_arpc_inside_softhsm() {
    let token = TestToken::with_test_keys();
    let verifier = Pkcs11Verifier::new(token.config(test_key_sets())).unwrap();
    let card = CardData::new("1234567890123456", 0).unwrap();
    let baseline = token.count_session_objects();
    for v in VECTORS {
        let ks = KeySetId(v.profile.name().into());
        let outcome = verifier
            .verify_arqc(&ks, &card, &emv_for(v, false))
            .unwrap();
        let ArqcOutcome::Verified(pending) = outcome else {
            panic!("{}: published ARQC rejected", v.profile)
        };
        let tag91 = pending.arpc(&response(v)).unwrap();
        assert_eq!(
            hex::encode_upper(tag91.as_bytes()),
            v.tag91,
            "{}: ARPC",
            v.profile
        );
        // Every derived key is gone once the ARPC is done.
        assert_eq!(token.count_session_objects(), baseline, "{}", v.profile);
    }
}

#[test]
fn one_amount_byte_changed_is_rejected_and_leaves_no_key() {
    let token = TestToken::with_test_keys();
    let verifier = Pkcs11Verifier::new(token.config(test_key_sets())).unwrap();
    let card = CardData::new("1234567890123456", 0).unwrap();
    let baseline = token.count_session_objects();
    for v in VECTORS {
        let ks = KeySetId(v.profile.name().into());
        let outcome = verifier.verify_arqc(&ks, &card, &emv_for(v, true)).unwrap();
        assert!(matches!(outcome, ArqcOutcome::Rejected), "{}", v.profile);
        assert_eq!(token.count_session_objects(), baseline, "{}", v.profile);
    }
    // A wrong PSN (another card) is rejected as well.
    let other = CardData::new("1234567890123456", 1).unwrap();
    let ks = KeySetId("visa-cvn18".into());
    assert!(matches!(
        verifier
            .verify_arqc(&ks, &other, &emv_for(&VECTORS[1], false))
            .unwrap(),
        ArqcOutcome::Rejected
    ));
}

#[test]
fn a_verification_dropped_without_arpc_destroys_its_keys() {
    let token = TestToken::with_test_keys();
    let verifier = Pkcs11Verifier::new(token.config(test_key_sets())).unwrap();
    let card = CardData::new("1234567890123456", 0).unwrap();
    let baseline = token.count_session_objects();
    let v = &VECTORS[3];
    let outcome = verifier
        .verify_arqc(&KeySetId("mc-cvn17".into()), &card, &emv_for(v, false))
        .unwrap();
    assert!(outcome.is_verified());
    // The key the ARPC needs is alive while the decision is pending...
    assert_eq!(token.count_session_objects(), baseline + 1);
    drop(outcome);
    // ...and destroyed when the pending ARPC is dropped.
    assert_eq!(token.count_session_objects(), baseline);
}

#[test]
fn unknown_key_set_and_missing_key_are_named() {
    let token = TestToken::with_test_keys();
    let verifier = Pkcs11Verifier::new(token.config(test_key_sets())).unwrap();
    let card = CardData::new("1234567890123456", 0).unwrap();
    let err = verifier
        .verify_arqc(
            &KeySetId("nope".into()),
            &card,
            &emv_for(&VECTORS[0], false),
        )
        .err()
        .unwrap();
    assert!(err.to_string().contains("nope"), "{err}");

    let empty = TestToken::new();
    let err = Pkcs11Verifier::new(empty.config(test_key_sets()))
        .err()
        .unwrap();
    assert!(err.to_string().contains(TEST_IMK_LABEL), "{err}");

    // A token nobody is logged in to (login is per application and token in PKCS#11).
    let fresh = TestToken::with_test_keys();
    let mut wrong_pin = fresh.config(test_key_sets());
    wrong_pin.user_pin = zeroize::Zeroizing::new("0000".into());
    let err = Pkcs11Verifier::new(wrong_pin).err().unwrap();
    let text = err.to_string();
    assert!(
        text.contains("CKR_PIN_INCORRECT") && text.contains("Login"),
        "{text}"
    );
}

#[test]
fn a_caller_waits_at_most_the_timeout_for_a_session() {
    let token = TestToken::with_test_keys();
    let mut config = token.config(test_key_sets());
    config.pool_size = 1;
    config.op_timeout = std::time::Duration::from_millis(50);
    let verifier = Pkcs11Verifier::new(config).unwrap();
    let card = CardData::new("1234567890123456", 0).unwrap();
    let ks = KeySetId("mc-cvn17".into());
    // The pending ARPC holds the only session.
    let held = verifier
        .verify_arqc(&ks, &card, &emv_for(&VECTORS[3], false))
        .unwrap();
    let started = std::time::Instant::now();
    let err = verifier
        .verify_arqc(&ks, &card, &emv_for(&VECTORS[3], false))
        .err()
        .unwrap();
    assert!(matches!(err, hsm::HsmError::Timeout { .. }), "{err}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(50));
    drop(held);
    assert!(
        verifier
            .verify_arqc(&ks, &card, &emv_for(&VECTORS[3], false))
            .unwrap()
            .is_verified()
    );
}
