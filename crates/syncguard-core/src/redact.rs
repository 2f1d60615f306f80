//! PII and secret redaction (SPEC §3.7): emails, phone numbers, bearer tokens, API keys, webhook
//! secrets and credential-named fields never reach a log line.
//!
//! The log writer passes every formatted line through [`redact`], so redaction does not depend
//! on each call site remembering to do it.

use regex::{Captures, Regex};
use std::borrow::Cow;
use std::sync::LazyLock;

/// What a redacted value is replaced with.
pub const MASK: &str = "[redacted]";

struct Rule {
    pattern: Regex,
    replace: fn(&Captures<'_>) -> String,
}

static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    let rule = |pattern: &str, replace: fn(&Captures<'_>) -> String| Rule {
        pattern: Regex::new(pattern).expect("redaction pattern compiles"),
        replace,
    };
    vec![
        // First, so that `Authorization: Bearer …` loses the token, not just the word `Bearer`.
        rule(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{4,}", |c| {
            format!("{} {MASK}", &c[1])
        }),
        // `"password": "…"`, `client_secret=…`, `authorization: …` — the value goes, the name stays.
        // Quoted values may contain escaped quotes (a JSON log line nests the message).
        rule(
            r#"(?i)(\\?"?(?:password|passwd|secret|client_secret|token|access_token|refresh_token|api_key|apikey|x-trackstar-api-key|x-trackstar-access-token|authorization|cookie|set-cookie|master_key|key)\\?"?\s*[:=]\s*)(\\?"(?:[^"\\]|\\[^"])*\\?"|[^\s,;&}"]+)"#,
            |c| format!("{}\"{MASK}\"", &c[1]),
        ),
        rule(
            r"\b(sg_live|whsec|whpk|sk_live|sk_test|rk_live|shpss|shpat|ghp|gho)_[A-Za-z0-9+/=_-]{4,}",
            |c| format!("{}_{MASK}", &c[1]),
        ),
        rule(
            r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
            |_| "[email]".to_string(),
        ),
        // International (+CC …) and North-American style numbers; plain long integers such as
        // timestamps or ids are left alone.
        rule(
            r"\+\d{1,3}[\s.-]?\(?\d{1,4}\)?(?:[\s.-]?\d{2,4}){2,4}\b|\b\(?\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}\b",
            |_| "[phone]".to_string(),
        ),
    ]
});

/// Returns `line` with every email, phone number, token and secret masked.
/// Borrows when nothing needed masking, which is the common case.
pub fn redact(line: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(line);
    for rule in RULES.iter() {
        if rule.pattern.is_match(&out) {
            let replaced = rule.pattern.replace_all(&out, rule.replace).into_owned();
            out = Cow::Owned(replaced);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(s: &str) -> String {
        redact(s).into_owned()
    }

    #[test]
    fn masks_pii_and_secrets() {
        let cases = [
            ("contact jane.doe+x@example.co.uk now", "jane.doe"),
            ("call +1 415-555-0132 today", "555-0132"),
            ("call +447911123456", "7911123456"),
            ("call (415) 555-0132", "555-0132"),
            ("Authorization: Bearer abc.def-ghi", "abc.def-ghi"),
            ("key sg_live_0123456789abcdef", "0123456789abcdef"),
            ("secret whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD", "C2FVsBQ"),
            (r#"{"password":"hunter2","user":"x"}"#, "hunter2"),
            (r#"{\"client_secret\":\"s3cr3t\"}"#, "s3cr3t"),
            ("client_secret=s3cr3t&grant=x", "s3cr3t"),
            ("x-trackstar-access-token: tok_12345", "tok_12345"),
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
        ] {
            assert_eq!(clean(s), s);
        }
    }
}
