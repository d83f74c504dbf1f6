//! PKCS#11 failures as [`HsmError`]s: the CKR code and its name, the step and the key label.
//!
//! What it must never do: put a key value, a PIN or card data in an error (the label of a key
//! is configuration, not a secret; that is all an error names besides the step and the code).

use cryptoki::error::{Error as P11Error, Rv, RvError};
use cryptoki_sys::*;

use crate::{HsmError, Step};

/// An error from the library, naming the key label and the step, with the CKR code.
pub fn p11_error(key_label: &str, step: Step, e: P11Error) -> HsmError {
    match e {
        P11Error::Pkcs11(rv, _function) => {
            let (rv, rv_name) = rv_code(rv);
            HsmError::Pkcs11 {
                key_label: key_label.to_owned(),
                step,
                rv,
                rv_name,
            }
        }
        other => HsmError::Module {
            step,
            detail: format!("key {key_label:?}: {other}"),
        },
    }
}

/// The CKR code and name of a cryptoki error (cryptoki keeps only an enum).
pub fn rv_code(rv: RvError) -> (u64, &'static str) {
    macro_rules! known {
        ($($c:ident),* $(,)?) => { [$(($c, stringify!($c))),*] };
    }
    let table = known![
        CKR_CANCEL,
        CKR_HOST_MEMORY,
        CKR_SLOT_ID_INVALID,
        CKR_GENERAL_ERROR,
        CKR_FUNCTION_FAILED,
        CKR_ARGUMENTS_BAD,
        CKR_ATTRIBUTE_READ_ONLY,
        CKR_ATTRIBUTE_SENSITIVE,
        CKR_ATTRIBUTE_TYPE_INVALID,
        CKR_ATTRIBUTE_VALUE_INVALID,
        CKR_DATA_INVALID,
        CKR_DATA_LEN_RANGE,
        CKR_DEVICE_ERROR,
        CKR_DEVICE_MEMORY,
        CKR_DEVICE_REMOVED,
        CKR_FUNCTION_NOT_SUPPORTED,
        CKR_KEY_HANDLE_INVALID,
        CKR_KEY_SIZE_RANGE,
        CKR_KEY_TYPE_INCONSISTENT,
        CKR_KEY_FUNCTION_NOT_PERMITTED,
        CKR_KEY_UNEXTRACTABLE,
        CKR_MECHANISM_INVALID,
        CKR_MECHANISM_PARAM_INVALID,
        CKR_OBJECT_HANDLE_INVALID,
        CKR_OPERATION_ACTIVE,
        CKR_OPERATION_NOT_INITIALIZED,
        CKR_PIN_INCORRECT,
        CKR_PIN_LOCKED,
        CKR_SESSION_CLOSED,
        CKR_SESSION_COUNT,
        CKR_SESSION_HANDLE_INVALID,
        CKR_SESSION_READ_ONLY,
        CKR_TEMPLATE_INCOMPLETE,
        CKR_TEMPLATE_INCONSISTENT,
        CKR_TOKEN_NOT_PRESENT,
        CKR_TOKEN_NOT_RECOGNIZED,
        CKR_USER_ALREADY_LOGGED_IN,
        CKR_USER_NOT_LOGGED_IN,
        CKR_USER_PIN_NOT_INITIALIZED,
        CKR_USER_TYPE_INVALID,
        CKR_BUFFER_TOO_SMALL,
        CKR_CRYPTOKI_NOT_INITIALIZED,
        CKR_CRYPTOKI_ALREADY_INITIALIZED,
    ];
    table
        .into_iter()
        .find(|(c, _)| matches!(Rv::from(*c), Rv::Error(e) if e == rv))
        // CK_RV is c_ulong: u64 here, u32 on some targets.
        .map(|(c, n)| {
            #[allow(clippy::useless_conversion)]
            let code = u64::from(c);
            (code, n)
        })
        .unwrap_or((u64::MAX, "unlisted CKR code"))
}
