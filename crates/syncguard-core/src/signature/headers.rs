//! How the verifier reads request headers.
//!
//! The core crate must not depend on an HTTP stack, so headers come in through a one-method
//! trait. The HTTP layer keeps its own header type and adapts it, either by collecting the
//! headers it stores anyway (`Vec<(String, String)>`) or with [`FnHeaders`] around a lookup.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::marker::PhantomData;

/// Read access to request headers. Names are matched case-insensitively; callers always ask
/// with the lowercase name. When a header is repeated, implementations return the first value.
pub trait HeaderLookup {
    /// The value of header `lowercase_name`, if present.
    fn get(&self, lowercase_name: &str) -> Option<&str>;
}

impl HeaderLookup for [(String, String)] {
    fn get(&self, lowercase_name: &str) -> Option<&str> {
        self.iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(lowercase_name))
            .map(|(_, value)| value.as_str())
    }
}

impl HeaderLookup for Vec<(String, String)> {
    fn get(&self, lowercase_name: &str) -> Option<&str> {
        HeaderLookup::get(self.as_slice(), lowercase_name)
    }
}

impl HeaderLookup for [(&str, &str)] {
    fn get(&self, lowercase_name: &str) -> Option<&str> {
        self.iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(lowercase_name))
            .map(|(_, value)| *value)
    }
}

impl<const N: usize> HeaderLookup for [(&str, &str); N] {
    fn get(&self, lowercase_name: &str) -> Option<&str> {
        HeaderLookup::get(self.as_slice(), lowercase_name)
    }
}

impl<S: BuildHasher> HeaderLookup for HashMap<String, String, S> {
    fn get(&self, lowercase_name: &str) -> Option<&str> {
        // Most callers store lowercase names, so try the hash lookup before scanning.
        HashMap::get(self, lowercase_name)
            .or_else(|| {
                self.iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case(lowercase_name))
                    .map(|(_, value)| value)
            })
            .map(String::as_str)
    }
}

impl<T: HeaderLookup + ?Sized> HeaderLookup for &T {
    fn get(&self, lowercase_name: &str) -> Option<&str> {
        (**self).get(lowercase_name)
    }
}

/// Adapts a lookup function, typically over the HTTP framework's own header map:
///
/// ```
/// use std::collections::BTreeMap;
/// use syncguard_core::signature::{FnHeaders, HeaderLookup};
///
/// // Stands in for `http::HeaderMap`, whose lookups are already case-insensitive.
/// let map: BTreeMap<&str, &str> = [("x-github-event", "push")].into();
/// let headers = FnHeaders::new(|name: &str| map.get(name).copied());
/// assert_eq!(headers.get("x-github-event"), Some("push"));
/// ```
///
/// The function receives the lowercase header name and must do its own case folding if the
/// underlying map needs it.
pub struct FnHeaders<'h, F> {
    lookup: F,
    /// Ties the returned values to the map they borrow from.
    values: PhantomData<&'h str>,
}

impl<'h, F> FnHeaders<'h, F>
where
    F: Fn(&str) -> Option<&'h str>,
{
    pub fn new(lookup: F) -> Self {
        Self {
            lookup,
            values: PhantomData,
        }
    }
}

impl<'h, F> HeaderLookup for FnHeaders<'h, F>
where
    F: Fn(&str) -> Option<&'h str>,
{
    fn get(&self, lowercase_name: &str) -> Option<&str> {
        (self.lookup)(lowercase_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_pairs_match_names_case_insensitively_and_take_the_first() {
        let headers = vec![
            ("X-GitHub-Event".to_owned(), "push".to_owned()),
            ("x-github-event".to_owned(), "ping".to_owned()),
        ];
        assert_eq!(headers.get("x-github-event"), Some("push"));
        assert_eq!(
            HeaderLookup::get(headers.as_slice(), "x-github-event"),
            Some("push")
        );
        assert_eq!(headers.get("x-github-delivery"), None);
    }

    #[test]
    fn borrowed_pairs_and_arrays() {
        let headers = [("Webhook-Id", "msg_1")];
        assert_eq!(headers.get("webhook-id"), Some("msg_1"));
        assert_eq!(
            HeaderLookup::get(headers.as_slice(), "webhook-id"),
            Some("msg_1")
        );
        let by_ref: &[(&str, &str)] = &headers;
        assert_eq!(HeaderLookup::get(&by_ref, "webhook-id"), Some("msg_1"));
    }

    #[test]
    fn hash_map_with_any_case() {
        let mut headers = HashMap::new();
        headers.insert("Stripe-Signature".to_owned(), "t=1,v1=00".to_owned());
        headers.insert("x-request-id".to_owned(), "abc".to_owned());
        assert_eq!(
            HeaderLookup::get(&headers, "stripe-signature"),
            Some("t=1,v1=00")
        );
        assert_eq!(HeaderLookup::get(&headers, "x-request-id"), Some("abc"));
        assert_eq!(HeaderLookup::get(&headers, "cookie"), None);
    }

    #[test]
    fn lookup_function() {
        let stored = vec![("x-shopify-topic".to_owned(), "orders/create".to_owned())];
        let headers = FnHeaders::new(|name: &str| stored.get(name));
        assert_eq!(headers.get("x-shopify-topic"), Some("orders/create"));
    }
}
