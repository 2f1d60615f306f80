//! Opaque cursors for list endpoints (SPEC §3.8): clients pass back what they were given and
//! never build one themselves, so the encoding can change without breaking them.

use base64::Engine;

/// Maximum and default page sizes.
pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 500;

/// A requested page: the position after which to continue, and how many items.
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    pub after: Option<String>,
    pub limit: i64,
}

/// One page of items and the cursor for the next one (`None` on the last page).
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from `limit + 1` fetched rows: the extra row only says that more exist.
    pub fn from_overfetch(mut items: Vec<T>, limit: i64, key: impl Fn(&T) -> String) -> Page<T> {
        let more = items.len() as i64 > limit;
        items.truncate(limit.max(0) as usize);
        let next_cursor = if more {
            items.last().map(|last| encode_cursor(&key(last)))
        } else {
            None
        };
        Page { items, next_cursor }
    }
}

pub fn encode_cursor(position: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(position.as_bytes())
}

/// Decodes a cursor; `None` when it was not one of ours.
pub fn decode_cursor(cursor: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        assert_eq!(
            decode_cursor(&encode_cursor("j:42")).as_deref(),
            Some("j:42")
        );
        assert_eq!(decode_cursor("%%%"), None);
    }

    #[test]
    fn overfetch_sets_next_cursor_only_when_more_exist() {
        let p = Page::from_overfetch(vec![1, 2, 3], 2, |i| i.to_string());
        assert_eq!(p.items, vec![1, 2]);
        assert_eq!(
            p.next_cursor.as_deref().and_then(decode_cursor).as_deref(),
            Some("2")
        );
        let p = Page::from_overfetch(vec![1, 2], 2, |i| i.to_string());
        assert!(p.next_cursor.is_none());
    }
}
