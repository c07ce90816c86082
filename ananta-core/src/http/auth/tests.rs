use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, header};
use jsonwebtoken::Header;

use super::credentials::credential;
use super::rate::rate_key;
use super::*;

const TOKEN: &str = "system-token-0123456789";
const SECRET: &str = "a-jwt-signing-secret-of-at-least-32-bytes";

fn bearer(credential: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {credential}")).unwrap(),
    );
    headers
}

fn secured() -> Auth {
    Auth::builder()
        .token(Some(TOKEN.into()))
        .jwt_secret(SECRET)
        .build()
        .unwrap()
}

fn status(result: Result<Principal, ApiError>) -> u16 {
    match result {
        Ok(_) => 200,
        Err(e) => e.status.as_u16(),
    }
}

const ALL: [Access; 4] = [Access::Public, Access::Read, Access::Write, Access::Admin];

#[test]
fn open_mode_allows_everything() {
    let auth = Auth::open();
    assert!(auth.is_open());
    auth.warn_if_open("hub");
    for access in ALL {
        let who = auth.authorize(&HeaderMap::new(), None, access).unwrap();
        assert_eq!(who.subject, "anonymous");
        assert_eq!(who.role, Role::Admin);
        // Even garbage credentials are ignored.
        assert!(auth.authorize(&bearer("junk"), None, access).is_ok());
    }
    assert!(
        auth.check_registration(&HeaderMap::new(), None, None)
            .is_ok()
    );
    // A builder without a token is open too.
    assert!(Auth::builder().build().unwrap().is_open());
}

#[test]
fn system_token_in_header_or_query() {
    let auth = secured();
    assert!(!auth.is_open());
    let who = auth.authorize(&bearer(TOKEN), None, Access::Admin).unwrap();
    assert_eq!(
        who,
        Principal {
            subject: "agent-token".into(),
            role: Role::Admin
        }
    );
    // Scheme case does not matter.
    let mut headers = HeaderMap::new();
    headers.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("bearer {TOKEN}")).unwrap(),
    );
    assert!(auth.authorize(&headers, None, Access::Admin).is_ok());

    let odd = Auth::builder()
        .token(Some("a b+c/d&e=f%".into()))
        .build()
        .unwrap();
    let query = "limit=5&token=a%20b%2Bc%2Fd%26e%3Df%25&x=1";
    let who = odd
        .authorize(&HeaderMap::new(), Some(query), Access::Write)
        .unwrap();
    assert_eq!(who.subject, "agent-token");
    // `+` is a space in a query, so the unencoded token is not this one.
    assert_eq!(
        status(odd.authorize(&HeaderMap::new(), Some("token=a+b+c/d"), Access::Read)),
        401
    );
    assert!(
        auth.authorize(
            &HeaderMap::new(),
            Some(&format!("token={TOKEN}")),
            Access::Admin
        )
        .is_ok()
    );
    // A header without the bearer scheme falls back to the query.
    let mut basic = HeaderMap::new();
    basic.insert(
        header::AUTHORIZATION,
        HeaderValue::from_static("Basic Zm9vOmJhcg=="),
    );
    assert!(
        auth.authorize(&basic, Some(&format!("token={TOKEN}")), Access::Admin)
            .is_ok()
    );
    assert_eq!(status(auth.authorize(&basic, None, Access::Read)), 401);
}

#[test]
fn wrong_or_missing_token_is_401_except_public() {
    let auth = secured();
    let wrong = bearer("system-token-0123456780");
    let prefix = bearer("system-token");
    for access in [Access::Read, Access::Write, Access::Admin] {
        for headers in [&HeaderMap::new(), &wrong, &prefix] {
            let e = auth.authorize(headers, None, access).unwrap_err();
            assert_eq!(e.status.as_u16(), 401, "{access:?}");
            assert_eq!(e.code(), "unauthorized");
            assert!(!e.body.error.message.contains("system-token"));
        }
        assert_eq!(
            status(auth.authorize(&HeaderMap::new(), Some("token=nope"), access)),
            401
        );
        assert_eq!(
            status(auth.authorize(&HeaderMap::new(), Some("token="), access)),
            401
        );
    }
    let who = auth.authorize(&wrong, None, Access::Public).unwrap();
    assert_eq!(who, Principal::anonymous(Role::Reader));
    let who = auth
        .authorize(&HeaderMap::new(), None, Access::Public)
        .unwrap();
    assert_eq!(who.role, Role::Reader);
    let who = auth
        .authorize(&bearer(TOKEN), None, Access::Public)
        .unwrap();
    assert_eq!(who.subject, "agent-token");
}

#[test]
fn jwt_roles() {
    let auth = secured();
    let admin = bearer(&auth.issue_jwt("root", Role::Admin).unwrap());
    let user = bearer(&auth.issue_jwt("bob", Role::User).unwrap());
    let reader = bearer(&auth.issue_jwt("eve", Role::Reader).unwrap());
    let expected: [(&HeaderMap, [u16; 4]); 3] = [
        (&admin, [200, 200, 200, 200]),
        (&user, [200, 200, 200, 403]),
        (&reader, [200, 200, 403, 403]),
    ];
    for (headers, statuses) in expected {
        for (access, want) in ALL.into_iter().zip(statuses) {
            assert_eq!(
                status(auth.authorize(headers, None, access)),
                want,
                "{access:?}"
            );
        }
    }
    let e = auth.authorize(&reader, None, Access::Write).unwrap_err();
    assert_eq!(e.code(), "forbidden");
    let who = auth.authorize(&user, None, Access::Write).unwrap();
    assert_eq!(
        who,
        Principal {
            subject: "bob".into(),
            role: Role::User
        }
    );
    // A JWT works as `?token=` as well.
    let jwt = auth.issue_jwt("bob", Role::User).unwrap();
    assert!(
        auth.authorize(
            &HeaderMap::new(),
            Some(&format!("token={jwt}")),
            Access::Write
        )
        .is_ok()
    );
}

fn forge(secret: &str, claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[test]
fn expired_foreign_or_malformed_jwts_are_401() {
    let auth = secured();
    let now = jsonwebtoken::get_current_timestamp();
    let good = forge(
        SECRET,
        &serde_json::json!({"sub": "bob", "role": "user", "exp": now + 60}),
    );
    assert!(auth.authorize(&bearer(&good), None, Access::Write).is_ok());
    let cases = [
        forge(
            SECRET,
            &serde_json::json!({"sub": "bob", "role": "user", "exp": now - 60}),
        ),
        forge(
            "another-secret-of-at-least-32-bytes!!",
            &serde_json::json!({"sub": "bob", "role": "admin", "exp": now + 60}),
        ),
        forge(
            SECRET,
            &serde_json::json!({"sub": "bob", "role": "superuser", "exp": now + 60}),
        ),
        forge(SECRET, &serde_json::json!({"sub": "bob", "role": "user"})),
        forge(
            SECRET,
            &serde_json::json!({"role": "admin", "exp": now + 60}),
        ),
        "not.a.jwt".to_string(),
    ];
    for jwt in cases {
        for access in [Access::Read, Access::Write, Access::Admin] {
            assert_eq!(
                status(auth.authorize(&bearer(&jwt), None, access)),
                401,
                "{jwt}"
            );
        }
    }
    // A zero lifetime expires (once the leeway has passed).
    let short = Auth::builder()
        .token(Some(TOKEN.into()))
        .jwt_secret(SECRET)
        .jwt_ttl(Duration::ZERO)
        .build()
        .unwrap();
    let jwt = short.issue_jwt("bob", Role::User).unwrap();
    let claims: Claims =
        jsonwebtoken::decode(&jwt, &DecodingKey::from_secret(SECRET.as_bytes()), &{
            let mut v = Validation::new(Algorithm::HS256);
            v.validate_exp = false;
            v
        })
        .unwrap()
        .claims;
    assert_eq!(claims.exp, claims.iat);
    // Another process with another secret does not accept this one's tokens.
    let other = Auth::builder().token(Some(TOKEN.into())).build().unwrap();
    let jwt = auth.issue_jwt("root", Role::Admin).unwrap();
    assert_eq!(
        status(other.authorize(&bearer(&jwt), None, Access::Read)),
        401
    );
}

#[test]
fn login() {
    let auth = Auth::builder()
        .token(Some(TOKEN.into()))
        .jwt_secret(SECRET)
        .jwt_ttl(Duration::from_secs(120))
        .user("alice", "correct horse", Role::User)
        .unwrap()
        .build()
        .unwrap();
    let answer = auth
        .login(&LoginRequest {
            username: "alice".into(),
            password: "correct horse".into(),
        })
        .unwrap();
    assert_eq!(answer.token_type, "Bearer");
    assert_eq!(answer.expires_in, 120);
    assert_eq!(answer.role, Role::User);
    let who = auth
        .authorize(&bearer(&answer.token), None, Access::Write)
        .unwrap();
    assert_eq!(who.subject, "alice");
    assert_eq!(
        status(auth.authorize(&bearer(&answer.token), None, Access::Admin)),
        403
    );

    for (username, password) in [
        ("alice", "wrong"),
        ("alice", ""),
        ("mallory", "correct horse"),
    ] {
        let e = auth
            .login(&LoginRequest {
                username: username.into(),
                password: password.into(),
            })
            .unwrap_err();
        assert_eq!(e.status.as_u16(), 401);
        assert_eq!(e.code(), "invalid_credentials");
    }
    let e = secured()
        .login(&LoginRequest {
            username: "admin".into(),
            password: "admin".into(),
        })
        .unwrap_err();
    assert_eq!(e.code(), "invalid_credentials");
}

#[test]
fn stored_hashes() {
    let auth = Auth::builder()
        .user("alice", "pw-alice", Role::Reader)
        .unwrap()
        .build()
        .unwrap();
    let hash = auth.inner.users["alice"].hash.clone();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains("pw-alice"));
    // A stored hash logs in like the password it came from.
    let copy = Auth::builder()
        .user_hash("alice2", hash.clone(), Role::Admin)
        .unwrap()
        .build()
        .unwrap();
    let answer = copy
        .login(&LoginRequest {
            username: "alice2".into(),
            password: "pw-alice".into(),
        })
        .unwrap();
    assert_eq!(answer.role, Role::Admin);
    assert_eq!(copy.users(), vec![("alice2".to_string(), Role::Admin)]);
    for bad in [
        "",
        "pw-alice",
        "$2b$12$abcdefghijklmnopqrstuu5Ff0n0jlG9FpJ1Wj1Ea/7eE1X8nF9mG",
        "$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
        "$argon2id$v=19$m=19456,t=2,p=1",
    ] {
        assert!(
            matches!(
                Auth::builder().user_hash("x", bad, Role::User),
                Err(AuthError::Hash(_))
            ),
            "{bad}"
        );
    }
    assert!(matches!(
        Auth::builder().user("", "pw", Role::User),
        Err(AuthError::InvalidConfig(_))
    ));
    assert!(matches!(
        Auth::builder().user("x", "", Role::User),
        Err(AuthError::InvalidConfig(_))
    ));
}

#[test]
fn rotation() {
    let auth = secured();
    assert!(!auth.finish_rotation());
    let new = auth.begin_rotation();
    assert_eq!(new.len(), 64);
    assert!(new.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_ne!(new, TOKEN);
    assert_eq!(auth.token().as_deref(), Some(TOKEN));
    assert!(auth.authorize(&bearer(TOKEN), None, Access::Admin).is_ok());
    assert!(auth.authorize(&bearer(&new), None, Access::Admin).is_ok());
    // A second begin replaces the pending token.
    let newer = auth.begin_rotation();
    assert_ne!(newer, new);
    assert_eq!(
        status(auth.authorize(&bearer(&new), None, Access::Read)),
        401
    );
    assert!(auth.finish_rotation());
    assert_eq!(auth.token(), Some(newer.clone()));
    assert_eq!(
        status(auth.authorize(&bearer(TOKEN), None, Access::Read)),
        401
    );
    assert!(auth.authorize(&bearer(&newer), None, Access::Admin).is_ok());
    assert!(!auth.finish_rotation());

    // Abort keeps the old token and drops the pending one.
    let dropped = auth.begin_rotation();
    auth.abort_rotation();
    assert_eq!(auth.token(), Some(newer.clone()));
    assert!(auth.authorize(&bearer(&newer), None, Access::Admin).is_ok());
    assert_eq!(
        status(auth.authorize(&bearer(&dropped), None, Access::Read)),
        401
    );
    assert!(!auth.finish_rotation());

    // Clones share the tokens.
    let clone = auth.clone();
    clone.set_token(Some("replaced".into()));
    assert_eq!(auth.token().as_deref(), Some("replaced"));
    assert!(
        auth.authorize(&bearer("replaced"), None, Access::Admin)
            .is_ok()
    );
    auth.set_token(Some("  ".into()));
    assert!(auth.is_open());
    auth.set_token(None);
    assert!(clone.is_open());
    assert!(
        clone
            .authorize(&HeaderMap::new(), None, Access::Admin)
            .is_ok()
    );
}

#[test]
fn registration_secret_rules() {
    let none = HeaderMap::new();
    let code = |r: Result<(), ApiError>| r.map_or_else(|e| e.status.as_u16(), |()| 200);

    // Open mode without a secret: anyone.
    assert_eq!(
        code(Auth::open().check_registration(&none, None, None)),
        200
    );

    // Open mode with a secret: the secret or verified write credentials.
    let open = Auth::builder()
        .jwt_secret(SECRET)
        .registration_secret(Some("join-us".into()))
        .build()
        .unwrap();
    assert_eq!(
        code(open.check_registration(&none, None, Some("join-us"))),
        200
    );
    assert_eq!(code(open.check_registration(&none, None, None)), 401);
    assert_eq!(
        code(open.check_registration(&none, None, Some("join"))),
        401
    );
    let user = bearer(&open.issue_jwt("bob", Role::User).unwrap());
    let reader = bearer(&open.issue_jwt("eve", Role::Reader).unwrap());
    assert_eq!(code(open.check_registration(&user, None, None)), 200);
    assert_eq!(code(open.check_registration(&reader, None, None)), 403);
    assert_eq!(
        code(open.check_registration(&bearer("junk"), None, None)),
        401
    );

    // A token without a secret: write credentials.
    let auth = secured();
    assert_eq!(code(auth.check_registration(&none, None, None)), 401);
    assert_eq!(
        code(auth.check_registration(&none, None, Some("join-us"))),
        401
    );
    assert_eq!(
        code(auth.check_registration(&bearer(TOKEN), None, None)),
        200
    );
    let user = bearer(&auth.issue_jwt("bob", Role::User).unwrap());
    let reader = bearer(&auth.issue_jwt("eve", Role::Reader).unwrap());
    assert_eq!(code(auth.check_registration(&user, None, None)), 200);
    assert_eq!(code(auth.check_registration(&reader, None, None)), 403);

    // A token and a secret: either.
    let both = Auth::builder()
        .token(Some(TOKEN.into()))
        .registration_secret(Some("join-us".into()))
        .build()
        .unwrap();
    assert_eq!(
        code(both.check_registration(&none, None, Some("join-us"))),
        200
    );
    assert_eq!(
        code(both.check_registration(&none, None, Some("wrong"))),
        401
    );
    assert_eq!(code(both.check_registration(&none, None, None)), 401);
    assert_eq!(
        code(both.check_registration(&none, Some(&format!("token={TOKEN}")), Some("wrong"))),
        200
    );
}

#[test]
fn rate_limits_per_client() {
    let auth = Auth::builder()
        .rate_limit(RateBucket::Login, 2)
        .rate_limit(RateBucket::Register, 0)
        .build()
        .unwrap();
    let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let b = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    assert!(auth.check_rate(RateBucket::Login, a).is_ok());
    assert!(auth.check_rate(RateBucket::Login, a).is_ok());
    let e = auth.check_rate(RateBucket::Login, a).unwrap_err();
    assert_eq!(e.status.as_u16(), 429);
    assert_eq!(e.code(), "rate_limited");
    let wait = e.retry_after.unwrap();
    assert!((1..=30).contains(&wait), "{wait}");
    assert!(auth.check_rate(RateBucket::Login, b).is_ok());
    // The same client as IPv4 mapped into IPv6.
    let mapped = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped());
    assert_eq!(
        auth.check_rate(RateBucket::Login, mapped)
            .unwrap_err()
            .status
            .as_u16(),
        429
    );
    // IPv6 clients count by /64.
    let v6a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
    let v6b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
    let v6c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
    assert!(auth.check_rate(RateBucket::Login, v6a).is_ok());
    assert!(auth.check_rate(RateBucket::Login, v6b).is_ok());
    assert!(auth.check_rate(RateBucket::Login, v6a).is_err());
    assert!(auth.check_rate(RateBucket::Login, v6c).is_ok());
    assert_eq!(
        rate_key(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    );
    // Zero is unlimited; the buckets are separate.
    for _ in 0..100 {
        assert!(auth.check_rate(RateBucket::Register, a).is_ok());
    }
    // Defaults: 10 logins a minute.
    let default = Auth::open();
    for _ in 0..10 {
        assert!(default.check_rate(RateBucket::Login, a).is_ok());
    }
    assert!(default.check_rate(RateBucket::Login, a).is_err());
}

#[test]
fn from_lookup_reads_the_environment() {
    let env = |vars: &[(&str, &str)]| {
        let vars: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name: &str| vars.get(name).cloned()
    };
    let auth = Auth::from_lookup(env(&[
        ("AGENT_TOKEN", " tok-from-env\n"),
        ("SECRET_KEY", SECRET),
        ("INITIAL_ADMIN_PASSWORD", "hunter2"),
        ("REGISTRATION_SECRET", "reg"),
        ("JWT_TTL_SECS", "90"),
    ]))
    .unwrap();
    assert_eq!(auth.token().as_deref(), Some("tok-from-env"));
    assert_eq!(auth.users(), vec![("admin".to_string(), Role::Admin)]);
    let answer = auth
        .login(&LoginRequest {
            username: "admin".into(),
            password: "hunter2".into(),
        })
        .unwrap();
    assert_eq!(answer.expires_in, 90);
    assert_eq!(answer.role, Role::Admin);
    // Signed with SECRET_KEY: another instance with the same key accepts it.
    let twin = Auth::builder()
        .token(Some("x".into()))
        .jwt_secret(SECRET)
        .build()
        .unwrap();
    assert!(
        twin.authorize(&bearer(&answer.token), None, Access::Admin)
            .is_ok()
    );
    assert!(
        auth.check_registration(&HeaderMap::new(), None, Some("reg"))
            .is_ok()
    );

    let renamed = Auth::from_lookup(env(&[
        ("INITIAL_ADMIN_PASSWORD", "hunter2"),
        ("INITIAL_ADMIN_USER", "root"),
    ]))
    .unwrap();
    assert_eq!(renamed.users(), vec![("root".to_string(), Role::Admin)]);
    assert!(renamed.is_open());

    // Empty values are unset.
    let empty = Auth::from_lookup(env(&[
        ("AGENT_TOKEN", ""),
        ("SECRET_KEY", ""),
        ("INITIAL_ADMIN_PASSWORD", " "),
        ("REGISTRATION_SECRET", ""),
        ("JWT_TTL_SECS", ""),
    ]))
    .unwrap();
    assert!(empty.is_open());
    assert!(empty.users().is_empty());
    assert!(empty.inner.registration_secret.is_none());
    assert!(empty.inner.ephemeral_secret);

    assert!(matches!(
        Auth::from_lookup(env(&[("JWT_TTL_SECS", "an hour")])),
        Err(AuthError::InvalidConfig(_))
    ));
}

#[test]
fn builder_rejects_empty_secrets() {
    for builder in [
        Auth::builder().token(Some(" ".into())),
        Auth::builder().jwt_secret(""),
        Auth::builder().registration_secret(Some(String::new())),
    ] {
        assert!(matches!(builder.build(), Err(AuthError::InvalidConfig(_))));
    }
}

#[test]
fn debug_output_holds_no_secret() {
    let builder = Auth::builder()
        .token(Some(TOKEN.into()))
        .jwt_secret(SECRET)
        .registration_secret(Some("registration-secret".into()))
        .user("alice", "alice-password", Role::User)
        .unwrap();
    let hash = builder.users["alice"].hash.clone();
    let builder_debug = format!("{builder:?}");
    let auth = builder.build().unwrap();
    let pending = auth.begin_rotation();
    let debug = format!("{auth:?} {:?}", auth.clone());
    for text in [&debug, &builder_debug] {
        for secret in [
            TOKEN,
            SECRET,
            "registration-secret",
            "alice-password",
            &hash,
            &pending,
        ] {
            assert!(!text.contains(secret), "{text} shows {secret}");
        }
        assert!(text.contains("alice"));
    }
    assert!(debug.contains("rotation_pending: true"));
    let request = LoginRequest {
        username: "alice".into(),
        password: "alice-password".into(),
    };
    assert!(!format!("{request:?}").contains("alice-password"));
}

#[test]
fn roles_and_access_serialize_lowercase() {
    assert_eq!(serde_json::to_value(Role::Reader).unwrap(), "reader");
    assert_eq!(serde_json::to_value(Access::Write).unwrap(), "write");
    assert_eq!(Role::Admin.to_string(), "admin");
    let response: LoginResponse = serde_json::from_value(serde_json::json!({
        "token": "t", "token_type": "Bearer", "expires_in": 3600, "role": "user"
    }))
    .unwrap();
    assert_eq!(response.role, Role::User);
}

#[test]
fn percent_decoding() {
    let decoded = |query: &str| credential(&HeaderMap::new(), Some(query));
    assert_eq!(
        decoded("token=a%20b+c%2f%zz%4").as_deref(),
        Some("a b c/%zz%4")
    );
    assert_eq!(decoded("token=%C3%A4").as_deref(), Some("ä"));
    assert_eq!(credential(&HeaderMap::new(), Some("a=1&token")), None);
    assert_eq!(
        credential(&HeaderMap::new(), Some("token=&token=x")).as_deref(),
        Some("x")
    );
    assert_eq!(
        credential(&HeaderMap::new(), Some("to%6Ben=y")).as_deref(),
        Some("y")
    );
}
