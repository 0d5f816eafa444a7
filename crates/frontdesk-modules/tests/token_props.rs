//! Property tests of token verification (issue #8): arbitrary strings, and strings shaped
//! like JWTs, never panic and are never accepted; a valid token with any one character
//! changed is rejected as `unauthorized`. Cases: `PROPTEST_CASES` (default 256).

use std::time::Duration;

use frontdesk_core::error::ErrorKind;
use frontdesk_core::id::Id;
use frontdesk_core::store::Role;
use frontdesk_modules::tokens::Tokens;
use proptest::prelude::*;

fn tokens() -> Tokens {
    Tokens::from_key(b"0123456789abcdef0123456789abcdef")
}

fn valid_tokens() -> impl Strategy<Value = String> {
    (any::<u64>(), any::<u64>(), any::<bool>(), "[a-z0-9-]{1,16}").prop_map(|(site, user, agent, sid)| {
        let t = tokens();
        let ttl = Duration::from_secs(3600);
        let issued = if agent {
            t.issue_agent(Id(site), Id(user), Role::Agent, &sid, ttl)
        } else {
            t.issue_visitor(Id(site), Id(user), ttl)
        };
        issued.expect("issue")
    })
}

/// Three dot-joined base64url-ish parts, the shape a JWT parser looks at first.
fn jwt_shaped() -> impl Strategy<Value = String> {
    let part = prop_oneof!["[A-Za-z0-9_-]{0,64}", Just("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9".to_string())];
    (part.clone(), part.clone(), part).prop_map(|(h, p, s)| format!("{h}.{p}.{s}"))
}

proptest! {
    #[test]
    fn arbitrary_strings_are_never_accepted(token in any::<String>()) {
        let e = tokens().verify(&token).expect_err("accepted an arbitrary string");
        prop_assert_eq!(e.kind, ErrorKind::Unauthorized);
    }

    #[test]
    fn jwt_shaped_strings_are_never_accepted(token in jwt_shaped()) {
        let e = tokens().verify(&token).expect_err("accepted a made-up token");
        prop_assert_eq!(e.kind, ErrorKind::Unauthorized);
    }

    #[test]
    fn a_valid_token_with_one_character_changed_is_rejected(
        token in valid_tokens(),
        at in any::<prop::sample::Index>(),
        to in prop_oneof![any::<char>(), prop::sample::select(b"ABCDEFabcdef0123456789-_.=+/".to_vec()).prop_map(char::from)],
    ) {
        prop_assert!(tokens().verify(&token).is_ok());
        let i = at.index(token.len());
        let original = token.as_bytes()[i] as char;
        prop_assume!(to != original);
        let mut changed = String::with_capacity(token.len() + 4);
        changed.push_str(&token[..i]);
        changed.push(to);
        changed.push_str(&token[i + 1..]);
        let e = tokens().verify(&changed).expect_err("accepted a changed token");
        prop_assert_eq!(e.kind, ErrorKind::Unauthorized);
    }

    #[test]
    fn a_valid_token_with_one_bit_flipped_is_rejected(token in valid_tokens(), at in any::<prop::sample::Index>(), bit in 0u8..7) {
        let mut bytes = token.into_bytes();
        let i = at.index(bytes.len());
        bytes[i] ^= 1 << bit;
        // An ASCII byte with a low bit flipped stays ASCII, so the token stays a string.
        let changed = String::from_utf8(bytes).expect("ascii");
        let e = tokens().verify(&changed).expect_err("accepted a flipped token");
        prop_assert_eq!(e.kind, ErrorKind::Unauthorized);
    }
}
