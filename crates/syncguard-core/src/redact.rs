//! PII and secret redaction (SPEC §3.7): emails, phone numbers, bearer tokens, API keys, webhook
//! secrets and signing keys, credential-named fields and secrets named in free text never reach
//! a log line.
//!
//! The log writer passes every formatted line through [`redact_line`], so redaction does not
//! depend on each call site remembering to do it. A JSON log line is redacted string by string
//! first (each literal decoded, redacted, re-encoded), so that a value is seen as written — a
//! provider body quoted inside a message is plain JSON again, an email after a `\n` escape is
//! an email — and the line stays valid JSON; then the whole line, for `"password":"…"` pairs
//! that span two literals.
//!
//! Deliberately not masked: bare digit runs without a `+` or separators (timestamps, ids and
//! counts look exactly like national numbers written without spaces).

use regex::{Captures, Regex};
use std::borrow::Cow;
use std::sync::LazyLock;

/// What a redacted value is replaced with.
pub const MASK: &str = "[redacted]";

struct Rule {
    pattern: Regex,
    replace: fn(&Captures<'_>) -> String,
}

/// Names whose value is a secret wherever they appear (`name: value`, `name=value`,
/// `"name":"value"`). Matched anywhere in a word, so `client_secret`, `refresh_token` and
/// `signing_key` are covered by `secret`, `token` and `key`.
const SECRET_NAMES: &str = "password|passwd|passphrase|pwd|secret|token|api_key|apikey|api-key|\
    x-trackstar-api-key|authorization|cookie|set-cookie|master_key|private_key|key|credentials?";

/// Prefixes of keys and secrets that announce themselves: ours (`sg_live_` API keys, `whsec_`
/// secrets, `whsk_` signing keys, `whpk_` public keys) and common providers'.
const KEY_PREFIXES: &str = "sg_live|whsec|whsk|whpk|sk_live|sk_test|rk_live|pk_live|shpss|shpat|\
    shpca|ghp|gho|ghs|ghu|github_pat|xox[abpr]";

static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    let rule = |pattern: &str, replace: fn(&Captures<'_>) -> String| Rule {
        pattern: Regex::new(pattern).expect("redaction pattern compiles"),
        replace,
    };
    vec![
        // First, so that `Authorization: Bearer …` loses the token, not just the word `Bearer`.
        rule(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}", |c| {
            format!("{} {MASK}", &c[1])
        }),
        // `"password": "…"`, `client_secret=…`, `access_token":"…"` — the value goes, the name
        // and the value's quoting stay; objects and arrays are left to the other rules (so a JSON line stays JSON). Quotes may be escaped any
        // number of times (a body quoted in a message quoted in a JSON line).
        rule(
            &format!(
                r#"(?i)((?:\\*")?(?:{SECRET_NAMES})(?:\\*")?\s*[:=]\s*)(?:(\\*")((?:[^"\\]|\\[^"])*?)(\\*")|([^\s,;&{{}}\[\]"\\][^\s,;&}}"\\]*))"#
            ),
            |c| match (c.get(2), c.get(4)) {
                (Some(open), Some(close)) => {
                    format!("{}{}{MASK}{}", &c[1], open.as_str(), close.as_str())
                }
                // Unquoted: a JSON scalar or prose; quoted, the mask is valid JSON either way.
                _ => format!("{}\"{MASK}\"", &c[1]),
            },
        ),
        rule(
            &format!(r"\b({KEY_PREFIXES})_[A-Za-z0-9+/=_-]{{4,}}"),
            |c| format!("{}_{MASK}", &c[1]),
        ),
        // Secrets named in prose: `rotated secret 9f86d0818…`, `api key is AbC0…`. Only values
        // that look generated (long, letters and digits mixed) — `key expired` stays readable.
        rule(
            r"(?i)\b(secret|password|passwd|passphrase|api[ _-]?key|key|token)(\s+(?:is\s+|was\s+|of\s+)?)([A-Za-z0-9+/_.=-]{16,})",
            |c| {
                let value = &c[3];
                let generated = value.bytes().any(|b| b.is_ascii_digit())
                    && value.bytes().any(|b| b.is_ascii_alphabetic());
                if generated {
                    format!("{}{}{MASK}", &c[1], &c[2])
                } else {
                    c[0].to_string()
                }
            },
        ),
        rule(
            r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
            |_| "[email]".to_string(),
        ),
        // International: `+1 415-555-0132`, `+44 7911 123456`, E.164 `+14155550123`.
        rule(
            r"\+\d{1,3}[\s.-]?\(?\d{1,4}\)?(?:[\s.-]?\d{2,4}){2,4}\b|\+[1-9]\d{6,14}\b",
            |_| "[phone]".to_string(),
        ),
        // North American: `(415) 555-0132`, `415-555-0132`, `415.555.0132`.
        rule(
            r"\(\d{3}\)\s?\d{3}[\s.-]\d{4}\b|\b\d{3}[\s.-]\d{3}[\s.-]\d{4}\b",
            |_| "[phone]".to_string(),
        ),
        // National with a trunk 0: `0171 1234567`, `020 7946 0958`, `030/12345678`,
        // `01 23 45 67 89`. Not inside a word or a hyphenated id (a uuid's `-0123-4567`).
        rule(
            r"(^|[^\w.:/-])(0\d{2,4}[ /-]\d{3,8}(?:[ -]\d{2,4}){0,3}|0\d(?:[ .]\d{2}){4})($|[^\w-])",
            |c| format!("{}[phone]{}", &c[1], &c[3]),
        ),
    ]
});

/// Returns `text` with every email, phone number, token and secret masked.
/// Borrows when nothing needed masking, which is the common case.
pub fn redact(text: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(text);
    for rule in RULES.iter() {
        if rule.pattern.is_match(&out) {
            let replaced = rule.pattern.replace_all(&out, rule.replace).into_owned();
            out = Cow::Owned(replaced);
        }
    }
    out
}

/// Redacts one log line. A JSON line is redacted literal by literal, then as a whole; it stays
/// valid JSON. Any other line is redacted as text.
pub fn redact_line(line: &str) -> Cow<'_, str> {
    if !line.trim_start().starts_with('{') {
        return redact(line);
    }
    match redact_literals(line) {
        Cow::Borrowed(_) => redact(line),
        Cow::Owned(once) => Cow::Owned(redact(&once).into_owned()),
    }
}

/// Redacts the decoded content of each JSON string literal of `text` and re-encodes it.
fn redact_literals(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'"' {
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        while i < bytes.len() && bytes[i] != b'"' {
            i += if bytes[i] == b'\\' { 2 } else { 1 };
        }
        if i >= bytes.len() {
            break; // an unterminated literal: left to the whole-line pass
        }
        i += 1;
        let literal = &text[start..i];
        let Ok(decoded) = serde_json::from_str::<String>(literal) else {
            continue;
        };
        if let Cow::Owned(clean) = redact(&decoded) {
            let out = out.get_or_insert_with(|| String::with_capacity(text.len()));
            out.push_str(&text[copied..start]);
            out.push_str(&serde_json::to_string(&clean).expect("a string encodes"));
            copied = i;
        }
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut out) => {
            out.push_str(&text[copied..]);
            Cow::Owned(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn clean(s: &str) -> String {
        redact_line(s).into_owned()
    }

    #[test]
    fn masks_pii_and_secrets() {
        let cases = [
            ("contact jane.doe+x@example.co.uk now", "jane.doe"),
            ("call +1 415-555-0132 today", "555-0132"),
            ("call +447911123456", "7911123456"),
            ("call +14155550123 now", "4155550123"),
            ("sms to +4915112345678.", "15112345678"),
            ("call (415) 555-0132", "555-0132"),
            ("call (415)555-0132", "555-0132"),
            ("call 415-555-0123 now", "555-0123"),
            ("call 415.555.0123 now", "555.0123"),
            ("ruf 0171 1234567 an", "1234567"),
            ("ring 020 7946 0958", "7946 0958"),
            ("mobile 07911 123456", "123456"),
            ("tel 030/12345678", "12345678"),
            ("appeler 01 23 45 67 89", "45 67 89"),
            ("Authorization: Bearer abc.def-ghi", "abc.def-ghi"),
            (
                "sent Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig to the provider",
                "eyJhbG",
            ),
            ("refresh with token Zm9vYmFyYmF6cXV4MTIz", "Zm9vYmFy"),
            ("url https://x/cb?token=abc123&state=1", "abc123"),
            ("key sg_live_0123456789abcdef", "0123456789abcdef"),
            ("secret whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD", "C2FVsBQ"),
            ("signing with whsk_QUJDREVGR0hJSktMTU5PUFFSU1RV", "QUJDREVG"),
            (r#"{"password":"hunter2","user":"x"}"#, "hunter2"),
            (r#"{\"client_secret\":\"s3cr3t\"}"#, "s3cr3t"),
            (r#"body {"access_token":"ya29.a0AfH6"} refused"#, "ya29"),
            (r#"body access_token":"ya29.a0AfH6" cut"#, "ya29"),
            (r#"{\\\"access_token\\\":\\\"ya29.deep\\\"}"#, "ya29"),
            ("client_secret=s3cr3t&grant=x", "s3cr3t"),
            ("x-trackstar-access-token: tok_12345", "tok_12345"),
            (
                "rotated secret 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b",
                "9f86d0818",
            ),
            ("the api key is AbCdEf0123456789GhIj", "AbCdEf0123"),
            ("password was Tr0ub4dor3xyzxyzxyz", "Tr0ub4dor"),
            (
                "master key c2VjcmV0c2VjcmV0c2VjcmV0MTIzNDU2Nzg5MA==",
                "c2VjcmV0",
            ),
        ];
        for (input, leaked) in cases {
            let out = clean(input);
            assert!(!out.contains(leaked), "{input:?} leaked {leaked:?}: {out}");
        }
    }

    #[test]
    fn leaves_ordinary_text_alone() {
        for s in [
            "job 1234567890123 succeeded in 12 ms",
            r#"{"level":"INFO","message":"listening","addr":"127.0.0.1:8080"}"#,
            "attempt 3 of 6, retry in 4000 ms",
            "request 550e8400-e29b-0123-4567-446655440000 done",
            "at 2026-12-01T02:32:57.123+01:00 the batch of 0123 items",
            "version 0.12.3 on 10.0.0.12 port 5432",
            "the signing key expired; the token was refreshed",
            "whsk_ is a private signing key; configure its whpk_ public key instead",
            "idempotency key reused with another body",
        ] {
            assert_eq!(clean(s), s);
        }
    }

    #[test]
    fn json_lines_stay_json_and_escaped_values_are_seen() {
        let line = serde_json::json!({
            "message": "mail to\njane@example.com failed",
            "body": r#"{"access_token":"ya29.abc","sku":"A1"}"#,
            "password": "hunter2",
            "phone": "+1 415-555-0132",
        })
        .to_string();
        let out = clean(&line);
        let parsed: serde_json::Value = serde_json::from_str(&out).expect(&out);
        assert_eq!(parsed["message"], "mail to\n[email] failed");
        assert_eq!(
            parsed["body"],
            r#"{"access_token":"[redacted]","sku":"A1"}"#
        );
        assert_eq!(parsed["password"], MASK);
        assert_eq!(parsed["phone"], "[phone]");
    }

    proptest! {
        /// Whatever the fields hold, a JSON log line stays valid JSON after redaction.
        #[test]
        fn json_lines_stay_valid(fields in proptest::collection::vec(
            ("[a-z_]{1,12}", "[ -~\n\t\"\\\\é@+0-9]{0,40}"), 0..6)
        ) {
            let obj: serde_json::Map<String, serde_json::Value> = fields
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect();
            let line = serde_json::Value::Object(obj).to_string();
            let out = redact_line(&line);
            prop_assert!(serde_json::from_str::<serde_json::Value>(&out).is_ok(), "{} -> {}", line, out);
        }

        /// An email or phone number embedded anywhere in a field never survives.
        #[test]
        fn embedded_contacts_never_survive(
            before in "[ a-z\n]{0,10}",
            user in "[a-z]{3,10}",
            digits in "[2-9][0-9]{9}",
            after in "[ a-z\n.]{0,10}",
        ) {
            let email = format!("{user}@example.com");
            let phone = format!("+1{digits}");
            let line = serde_json::json!({ "message": format!("{before} {email} {after}"), "to": format!("{before} {phone} {after}") }).to_string();
            let out = redact_line(&line);
            prop_assert!(!out.contains(&email), "{}", out);
            prop_assert!(!out.contains(&digits), "{}", out);
        }
    }
}
