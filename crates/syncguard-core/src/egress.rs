//! The egress policy (SPEC §3.3): which network addresses syncguard may connect to when it calls
//! out (provider APIs, OAuth2 token endpoints, link flows, and later outbound delivery).
//!
//! Tenant admins choose where calls go (`config.base_url`), so an unchecked URL lets any of
//! them make the server reach its own cloud metadata service, its admin ports or the private
//! network behind it (SSRF), and read the answer back through error messages. The rules here
//! are pure so they can be tested as a table; the app applies them to every address it actually
//! connects to (after DNS, on every redirect hop).
//!
//! Three kinds of address:
//! - [`AddrClass::Forbidden`]: link-local, cloud metadata, unspecified, multicast, broadcast,
//!   reserved and documentation ranges. Never allowed, not even by the allowlist.
//! - [`AddrClass::Internal`]: loopback, private (RFC 1918, unique local) and shared (CGNAT)
//!   ranges. Allowed outside production (the mock provider and tests run on 127.0.0.1); in
//!   production only when allowlisted by address range or by host name.
//! - [`AddrClass::Public`]: everything else.
//!
//! IPv6 forms that carry an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::/96`,
//! 6to4 `2002::/16`) are judged by the IPv4 address they carry, so `::ffff:169.254.169.254`
//! is as forbidden as `169.254.169.254`.

use std::net::{IpAddr, Ipv4Addr};

/// What an address is, for the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrClass {
    /// Never connected to; the reason names the range.
    Forbidden(&'static str),
    /// Connected to outside production, or when allowlisted.
    Internal(&'static str),
    Public,
}

/// IPv4 ranges, most specific first (a metadata address inside an internal range must be
/// found as forbidden before the range that holds it).
const V4: &[([u8; 4], u8, AddrClass)] = &[
    (
        [100, 100, 100, 200],
        32,
        AddrClass::Forbidden("cloud metadata"),
    ),
    (
        [0, 0, 0, 0],
        8,
        AddrClass::Forbidden("\"this network\" (0.0.0.0/8)"),
    ),
    ([169, 254, 0, 0], 16, AddrClass::Forbidden("link-local")),
    (
        [192, 0, 0, 0],
        24,
        AddrClass::Forbidden("IETF protocol assignments"),
    ),
    ([192, 0, 2, 0], 24, AddrClass::Forbidden("documentation")),
    ([198, 51, 100, 0], 24, AddrClass::Forbidden("documentation")),
    ([203, 0, 113, 0], 24, AddrClass::Forbidden("documentation")),
    ([224, 0, 0, 0], 4, AddrClass::Forbidden("multicast")),
    ([255, 255, 255, 255], 32, AddrClass::Forbidden("broadcast")),
    ([240, 0, 0, 0], 4, AddrClass::Forbidden("reserved")),
    ([127, 0, 0, 0], 8, AddrClass::Internal("loopback")),
    ([10, 0, 0, 0], 8, AddrClass::Internal("private")),
    ([172, 16, 0, 0], 12, AddrClass::Internal("private")),
    ([192, 168, 0, 0], 16, AddrClass::Internal("private")),
    ([100, 64, 0, 0], 10, AddrClass::Internal("shared (CGNAT)")),
    ([198, 18, 0, 0], 15, AddrClass::Internal("benchmarking")),
];

/// IPv6 ranges (after the IPv4-carrying forms are unwrapped), most specific first.
const V6: &[(u128, u8, AddrClass)] = &[
    // fd00:ec2::254, the AWS metadata service over IPv6 (inside fc00::/7).
    (
        0xfd00_0ec2_0000_0000_0000_0000_0000_0254,
        128,
        AddrClass::Forbidden("cloud metadata"),
    ),
    (0, 128, AddrClass::Forbidden("unspecified (::)")),
    (1, 128, AddrClass::Internal("loopback")),
    // The deprecated IPv4-compatible form ::a.b.c.d: nothing legitimate uses it.
    (0, 96, AddrClass::Forbidden("IPv4-compatible (deprecated)")),
    (0xfe80 << 112, 10, AddrClass::Forbidden("link-local")),
    (
        0xfec0 << 112,
        10,
        AddrClass::Forbidden("site-local (deprecated)"),
    ),
    (0xff00 << 112, 8, AddrClass::Forbidden("multicast")),
    (0x0100 << 112, 64, AddrClass::Forbidden("discard-only")),
    (0x2001_0db8 << 96, 32, AddrClass::Forbidden("documentation")),
    (
        0xfc00 << 112,
        7,
        AddrClass::Internal("unique local (private)"),
    ),
];

/// How `ip` is treated by the policy.
pub fn classify(ip: IpAddr) -> AddrClass {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            V4.iter()
                .find(|(net, prefix, _)| in_net(u32::from(Ipv4Addr::from(*net)), bits, *prefix, 32))
                .map_or(AddrClass::Public, |r| r.2)
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            V6.iter()
                .find(|(net, prefix, _)| in_net128(*net, bits, *prefix))
                .map_or(AddrClass::Public, |r| r.2)
        }
    }
}

/// `ip` with an IPv4 address carried in IPv6 (mapped, NAT64, 6to4) unwrapped to it, so that
/// every check sees the address the packets really go to.
pub fn canonical(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else { return ip };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return IpAddr::V4(v4);
    }
    let bits = u128::from(v6);
    // NAT64 well-known prefix 64:ff9b::/96: the low 32 bits.
    if in_net128(0x0064_ff9b << 96, bits, 96) {
        return IpAddr::V4(Ipv4Addr::from(bits as u32));
    }
    // 6to4 2002:AABB:CCDD::/48: bits 16..48.
    if in_net128(0x2002 << 112, bits, 16) {
        return IpAddr::V4(Ipv4Addr::from((bits >> 80) as u32));
    }
    ip
}

fn in_net(net: u32, ip: u32, prefix: u8, width: u8) -> bool {
    if prefix == 0 {
        return true;
    }
    let shift = width - prefix;
    (net >> shift) == (ip >> shift)
}

fn in_net128(net: u128, ip: u128, prefix: u8) -> bool {
    if prefix == 0 {
        return true;
    }
    let shift = 128 - u32::from(prefix);
    net.checked_shr(shift).unwrap_or(0) == ip.checked_shr(shift).unwrap_or(0)
}

/// An address range of the allowlist (`10.0.0.0/8`, `fd12::/16`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `a.b.c.d/n`, `x::y/n`, or a bare address (a range of one).
    pub fn parse(s: &str) -> Option<Cidr> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr.trim().parse().ok()?;
        let width = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().ok().filter(|p| *p <= width)?,
            None => width,
        };
        Some(Cidr { net, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, canonical(ip)) {
            (IpAddr::V4(n), IpAddr::V4(i)) => in_net(u32::from(n), u32::from(i), self.prefix, 32),
            (IpAddr::V6(n), IpAddr::V6(i)) => in_net128(u128::from(n), u128::from(i), self.prefix),
            _ => false,
        }
    }
}

/// Why an address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{ip} is {reason}{}", if *.always { " (never allowed)" } else { " (not allowlisted in `egress.allow`)" })]
pub struct Refusal {
    pub ip: IpAddr,
    pub reason: &'static str,
    /// Forbidden whatever the configuration says.
    pub always: bool,
}

/// The policy in force: the environment and the operator's allowlist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// In production, internal addresses need the allowlist.
    pub production: bool,
    nets: Vec<Cidr>,
    /// Lowercase host names without a trailing dot.
    hosts: Vec<String>,
}

impl Policy {
    /// A policy from the `[egress] allow` entries: address ranges or host names. The error
    /// names the entry that is neither.
    pub fn new(production: bool, allow: &[String]) -> Result<Policy, String> {
        let mut policy = Policy {
            production,
            ..Policy::default()
        };
        for entry in allow {
            if let Some(cidr) = Cidr::parse(entry) {
                policy.nets.push(cidr);
            } else if let Some(host) = host_name(entry) {
                policy.hosts.push(host);
            } else {
                return Err(format!(
                    "`{entry}` is neither an address range (10.0.0.0/8) nor a host name"
                ));
            }
        }
        Ok(policy)
    }

    /// Whether `host` (as named in the URL, when it was a name) may be reached at `ip`.
    pub fn check(&self, host: Option<&str>, ip: IpAddr) -> Result<(), Refusal> {
        match classify(ip) {
            AddrClass::Public => Ok(()),
            AddrClass::Forbidden(reason) => Err(Refusal {
                ip,
                reason,
                always: true,
            }),
            AddrClass::Internal(reason) => {
                let allowed = !self.production
                    || self.nets.iter().any(|n| n.contains(ip))
                    || host
                        .and_then(host_name)
                        .is_some_and(|h| self.hosts.contains(&h));
                if allowed {
                    Ok(())
                } else {
                    Err(Refusal {
                        ip,
                        reason,
                        always: false,
                    })
                }
            }
        }
    }
}

/// `s` as a normalized DNS host name (lowercase, no trailing dot), if it is one.
fn host_name(s: &str) -> Option<String> {
    let s = s.trim().trim_end_matches('.').to_ascii_lowercase();
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    ok.then_some(s)
}

/// Why a value cannot be one path segment of a provider URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    #[error("must not be empty")]
    Empty,
    #[error("must not be `.` or `..` (it would address another path)")]
    DotSegment,
}

/// `value` percent-encoded as exactly one URL path segment. Only unreserved characters stay as
/// they are, so `/`, `?`, `#` and `%` (hence an already encoded `%2F`) cannot create segments,
/// a query or a fragment. `.` and `..` are refused rather than encoded: URL parsers treat `%2E`
/// as a dot too, so no encoding of them is safe.
pub fn path_segment(value: &str) -> Result<String, SegmentError> {
    match value {
        "" => return Err(SegmentError::Empty),
        "." | ".." => return Err(SegmentError::DotSegment),
        _ => {}
    }
    let mut encoded = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(encoded)
}

#[cfg(test)]
mod tests;
