//! RFC 8785 canonical JSON (JCS) and the content hashes built on it (SPEC §3.2, §3.5).
//!
//! A content hash must not change when a provider re-serializes the same data with other key
//! order or whitespace, or we would publish, snapshot and report drift for nothing. JCS fixes
//! one textual form for every JSON value: members sorted by the UTF-16 code units of their
//! names, no insignificant whitespace, strings escaped as ECMAScript `JSON.stringify` does, and
//! numbers written as ECMAScript writes the IEEE 754 double they denote. That last rule means an
//! integer beyond 2^53 loses precision, exactly as in every other JCS implementation: ids that
//! large must travel as strings.
//!
//! Duplicate member names cannot reach us (`serde_json` keeps the last one), which matches the
//! I-JSON subset JCS requires.

use std::convert::Infallible;

use serde_json::{Map, Number, Value};
use sha2::{Digest, Sha256};

/// Why a value has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    /// JCS numbers are finite IEEE 754 doubles. `serde_json` only lets such a number in when a
    /// crate in the build turns on its `arbitrary_precision` feature (then `1e400` parses).
    #[error("number {0} is outside the range of an ieee 754 double")]
    NumberOutOfRange(String),
}

/// The RFC 8785 canonical text of `value`.
pub fn canonicalize(value: &Value) -> Result<String, CanonicalError> {
    let mut out = String::new();
    write_value(&mut out, value, Reject)?;
    Ok(out)
}

/// The canonical form as UTF-8 bytes, for hashing.
///
/// Infallible so that hashing never has an error path: for the one value JCS cannot express (a
/// number beyond the double range, see [`CanonicalError`]) the number's own decimal text is
/// written instead. That keeps the output deterministic, and it cannot collide with the
/// canonical form of another value because canonical numbers never exceed `1.7976931348623157e+308`.
pub fn canonical_bytes(value: &Value) -> Vec<u8> {
    let mut out = String::new();
    match write_value(&mut out, value, Verbatim) {
        Ok(()) => out.into_bytes(),
        Err(never) => match never {},
    }
}

/// Lowercase hex SHA-256 of the canonical form of `value`.
pub fn content_hash(value: &Value) -> String {
    hex::encode(Sha256::digest(canonical_bytes(value)))
}

/// Content hash of a raw body: of its canonical form when it is JSON, of the bytes themselves
/// otherwise (webhooks may be form-encoded). A non-JSON body cannot collide with a JSON one,
/// since canonical JSON text always parses as JSON.
pub fn content_hash_bytes(body: &[u8]) -> String {
    match serde_json::from_slice::<Value>(body) {
        Ok(value) => content_hash(&value),
        Err(_) => hex::encode(Sha256::digest(body)),
    }
}

/// What the writer does with a number that has no finite double value: [`Reject`] it (the
/// strict RFC behaviour) or write it [`Verbatim`]. Its error type lets one writer serve both the
/// fallible and the infallible entry points.
trait OutOfRange: Copy {
    type Error;
    fn substitute(self, number: &Number) -> Result<String, Self::Error>;
}

#[derive(Clone, Copy)]
struct Reject;

impl OutOfRange for Reject {
    type Error = CanonicalError;
    fn substitute(self, number: &Number) -> Result<String, CanonicalError> {
        Err(CanonicalError::NumberOutOfRange(number.to_string()))
    }
}

#[derive(Clone, Copy)]
struct Verbatim;

impl OutOfRange for Verbatim {
    type Error = Infallible;
    fn substitute(self, number: &Number) -> Result<String, Infallible> {
        Ok(number.to_string())
    }
}

fn write_value<P: OutOfRange>(out: &mut String, value: &Value, policy: P) -> Result<(), P::Error> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(number) => write_number(out, number, policy)?,
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item, policy)?;
            }
            out.push(']');
        }
        Value::Object(members) => write_object(out, members, policy)?,
    }
    Ok(())
}

fn write_object<P: OutOfRange>(
    out: &mut String,
    members: &Map<String, Value>,
    policy: P,
) -> Result<(), P::Error> {
    // serde_json orders keys by UTF-8 bytes (or by insertion with `preserve_order`); JCS wants
    // UTF-16 code units, which differ for characters above U+FFFF.
    let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
    sorted.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
    out.push('{');
    for (i, (key, value)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, key);
        out.push(':');
        write_value(out, value, policy)?;
    }
    out.push('}');
    Ok(())
}

fn write_number<P: OutOfRange>(
    out: &mut String,
    number: &Number,
    policy: P,
) -> Result<(), P::Error> {
    // Integers go through f64 too: JCS defines numbers as doubles, so 2^53 + 1 must come out as
    // 9007199254740992, as it does in JavaScript.
    match number.as_f64().filter(|f| f.is_finite()) {
        Some(f) => out.push_str(ryu_js::Buffer::new().format_finite(f)),
        None => out.push_str(&policy.substitute(number)?),
    }
    Ok(())
}

/// Writes `s` quoted and escaped as ECMAScript `JSON.stringify` does: only `"`, `\` and control
/// characters are escaped; everything else, non-ASCII included, is written as is.
fn write_string(out: &mut String, s: &str) {
    out.push('"');
    let mut clean_from = 0;
    for (i, c) in s.char_indices() {
        let escape = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\u{08}' => "\\b",
            '\t' => "\\t",
            '\n' => "\\n",
            '\u{0C}' => "\\f",
            '\r' => "\\r",
            c if c < '\u{20}' => "",
            _ => continue,
        };
        out.push_str(&s[clean_from..i]);
        if escape.is_empty() {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push_str(escape);
        }
        clean_from = i + c.len_utf8();
    }
    out.push_str(&s[clean_from..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn canon(text: &str) -> String {
        canonicalize(&serde_json::from_str(text).unwrap()).unwrap()
    }

    fn number(f: f64) -> String {
        canonicalize(&Value::from(f)).unwrap()
    }

    /// RFC 8785 §3.2.4 (the input of §3.2.1 and its canonical output), also the `values.json`
    /// pair of the reference test data (github.com/cyberphone/json-canonicalization, testdata/).
    #[test]
    fn rfc8785_sample() {
        let input = r#"{
            "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
            "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
            "literals": [null, true, false]
        }"#;
        assert_eq!(
            canon(input),
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
    }

    /// RFC 8785 §3.2.3: names sort by UTF-16 code units, so the emoji (D83D DE00) comes before
    /// U+FB33 although its code point is larger.
    #[test]
    fn rfc8785_sorting() {
        let input = r#"{
            "\u20ac": "Euro Sign",
            "\r": "Carriage Return",
            "\ufb33": "Hebrew Letter Dalet With Dagesh",
            "1": "One",
            "\ud83d\ude00": "Emoji: Grinning Face",
            "\u0080": "Control",
            "\u00f6": "Latin Small Letter O With Diaeresis"
        }"#;
        assert_eq!(
            canon(input),
            "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\
             \"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\
             \"\u{1f600}\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}"
        );
    }

    /// Reference test data of the RFC's authors (cyberphone/json-canonicalization, testdata/
    /// `structures.json` and `weird.json`).
    #[test]
    fn reference_test_data() {
        assert_eq!(
            canon(
                r#"{"1": {"f": {"f": "hi","F": 5} ,"\n": 56.0}, "10": { }, "": "empty", "a": { }, "111": [ { } ], "A": { }}"#
            ),
            r#"{"":"empty","1":{"\n":56,"f":{"F":5,"f":"hi"}},"10":{},"111":[{}],"A":{},"a":{}}"#
        );
        assert_eq!(
            canon(
                r#"{"\u20ac": "Euro Sign", "1": "One", "\u0080": "Control\u007f", "\ud83d\ude02": "Smiley",
                "\u00f6": "Latin Small Letter O With Diaeresis", "\ufb33": "Hebrew Letter Dalet With Dagesh",
                "</script>": "Browser Challenge"}"#
            ),
            "{\"1\":\"One\",\"</script>\":\"Browser Challenge\",\"\u{80}\":\"Control\u{7f}\",\
             \"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\
             \"\u{1f602}\":\"Smiley\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}"
        );
    }

    /// RFC 8785 Appendix B: IEEE 754 bit patterns and their ECMAScript serialization.
    #[test]
    fn rfc8785_appendix_b_numbers() {
        let table: &[(u64, &str)] = &[
            (0x0000000000000000, "0"),
            (0x8000000000000000, "0"),
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0xffefffffffffffff, "-1.7976931348623157e+308"),
            (0x4340000000000000, "9007199254740992"),
            (0xc340000000000000, "-9007199254740992"),
            (0x4430000000000000, "295147905179352830000"),
            (0x44b52d02c7e14af5, "9.999999999999997e+22"),
            (0x44b52d02c7e14af6, "1e+23"),
            (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
            (0x444b1ae4d6e2ef4e, "999999999999999700000"),
            (0x444b1ae4d6e2ef4f, "999999999999999900000"),
            (0x444b1ae4d6e2ef50, "1e+21"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x41b3de4355555553, "333333333.3333332"),
            (0x41b3de4355555554, "333333333.33333325"),
            (0x41b3de4355555555, "333333333.3333333"),
            (0x41b3de4355555556, "333333333.3333334"),
            (0x41b3de4355555557, "333333333.33333343"),
            (0xbecbf647612f3696, "-0.0000033333333333333333"),
            (0x43143ff3c1cb0959, "1424953923781206.2"),
        ];
        for &(bits, expected) in table {
            assert_eq!(number(f64::from_bits(bits)), expected, "bits {bits:016x}");
        }
    }

    #[test]
    fn numbers_around_the_exponent_thresholds() {
        assert_eq!(number(1e21), "1e+21");
        assert_eq!(number(1e20), "100000000000000000000");
        assert_eq!(number(1e-7), "1e-7");
        assert_eq!(number(-0.0), "0");
        assert_eq!(canon("-0"), "0");
        assert_eq!(canon("100"), "100");
        assert_eq!(canon("1.0"), "1");
    }

    #[test]
    fn integers_beyond_2_pow_53_are_rounded_as_doubles() {
        assert_eq!(canon("9007199254740993"), "9007199254740992");
        assert_eq!(canon("18446744073709551615"), "18446744073709552000");
        assert_eq!(canon("-9223372036854775808"), "-9223372036854776000");
    }

    #[test]
    fn control_characters_use_short_or_lowercase_escapes() {
        let s: String = (0u8..0x20)
            .map(char::from)
            .chain(['\u{7f}', 'é', '\u{2028}'])
            .collect();
        assert_eq!(
            canonicalize(&Value::String(s)).unwrap(),
            "\"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r\
             \\u000e\\u000f\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\\u0018\
             \\u0019\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f\u{7f}é\u{2028}\""
        );
    }

    #[test]
    fn content_hash_is_lowercase_sha256_of_canonical_text() {
        let value = json!({"b": 1, "a": [true, null]});
        assert_eq!(canonical_bytes(&value), br#"{"a":[true,null],"b":1}"#);
        assert_eq!(
            content_hash(&value),
            hex::encode(Sha256::digest(br#"{"a":[true,null],"b":1}"#))
        );
        assert_eq!(content_hash(&json!({})), hex::encode(Sha256::digest(b"{}")));
    }

    #[test]
    fn non_json_bodies_hash_their_raw_bytes() {
        let form = b"a=1&b=2";
        assert_eq!(content_hash_bytes(form), hex::encode(Sha256::digest(form)));
        assert_eq!(content_hash_bytes(b""), hex::encode(Sha256::digest(b"")));
        assert_eq!(
            content_hash_bytes(b" {\"b\":1,\n \"a\":2} "),
            content_hash(&json!({"a": 2, "b": 1}))
        );
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("json has no nan or infinity", |f| f.is_finite())
                .prop_map(Value::from),
            "\\PC{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("\\PC{0,8}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Serializes `value` as JSON text with members in a shuffled order and arbitrary
    /// whitespace, as some other producer might.
    fn scrambled(value: &Value, rng: &mut impl rand::Rng) -> String {
        let ws = |rng: &mut dyn rand::RngCore| [" ", "", "\n  ", "\t"][rng.next_u32() as usize % 4];
        match value {
            Value::Array(items) => {
                let parts: Vec<String> = items.iter().map(|v| scrambled(v, rng)).collect();
                format!("[{}{}]", parts.join(","), ws(rng))
            }
            Value::Object(members) => {
                let mut entries: Vec<(&String, &Value)> = members.iter().collect();
                rand::seq::SliceRandom::shuffle(entries.as_mut_slice(), rng);
                let parts: Vec<String> = entries
                    .into_iter()
                    .map(|(k, v)| {
                        let key = serde_json::to_string(k).unwrap();
                        format!(
                            "{}{key}{}:{}{}",
                            ws(rng),
                            ws(rng),
                            ws(rng),
                            scrambled(v, rng)
                        )
                    })
                    .collect();
                format!("{{{}}}", parts.join(","))
            }
            leaf => serde_json::to_string(leaf).unwrap(),
        }
    }

    proptest! {
        #[test]
        fn hash_ignores_key_order_and_whitespace(value in arb_json(), seed in any::<u64>()) {
            let expected = content_hash(&value);
            let compact = serde_json::to_string(&value).unwrap();
            let pretty = serde_json::to_string_pretty(&value).unwrap();
            let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
            let shuffled = scrambled(&value, &mut rng);
            prop_assert_eq!(content_hash_bytes(compact.as_bytes()), expected.clone());
            prop_assert_eq!(content_hash_bytes(pretty.as_bytes()), expected.clone());
            prop_assert_eq!(content_hash_bytes(shuffled.as_bytes()), expected);
        }

        #[test]
        fn canonical_text_is_a_fixed_point(value in arb_json()) {
            let once = canonicalize(&value).unwrap();
            let reparsed: Value = serde_json::from_str(&once).unwrap();
            prop_assert_eq!(canonicalize(&reparsed).unwrap(), once);
        }
    }
}
