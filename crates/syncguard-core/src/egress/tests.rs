//! The classification table, address by address, and the policy over it.

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn forbidden(s: &str) -> bool {
    matches!(classify(ip(s)), AddrClass::Forbidden(_))
}

fn internal(s: &str) -> bool {
    matches!(classify(ip(s)), AddrClass::Internal(_))
}

#[test]
fn link_local_metadata_and_unroutable_addresses_are_forbidden() {
    for a in [
        "169.254.169.254",
        "169.254.0.1",
        "169.254.255.255",
        "100.100.100.200",
        "0.0.0.0",
        "0.1.2.3",
        "255.255.255.255",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "192.0.0.192",
        "192.0.2.10",
        "198.51.100.1",
        "203.0.113.9",
        "::",
        "fe80::1",
        "febf:ffff::1",
        "fd00:ec2::254",
        "ff02::1",
        "ff0e::fb",
        "fec0::1",
        "2001:db8::1",
        "100::1",
        "::169.254.169.254",
        "::127.0.0.1",
    ] {
        assert!(forbidden(a), "{a}: {:?}", classify(ip(a)));
    }
}

#[test]
fn ipv4_carried_in_ipv6_is_judged_as_ipv4() {
    for a in [
        "::ffff:169.254.169.254",
        "::ffff:a9fe:a9fe",
        "::ffff:100.100.100.200",
        "::ffff:0.0.0.0",
        "::ffff:255.255.255.255",
        "::ffff:224.0.0.1",
        "64:ff9b::169.254.169.254",
        "2002:a9fe:a9fe::1",
    ] {
        assert!(forbidden(a), "{a}: {:?}", classify(ip(a)));
    }
    for a in [
        "::ffff:127.0.0.1",
        "::ffff:10.1.2.3",
        "::ffff:192.168.1.1",
        "::ffff:172.16.0.1",
        "64:ff9b::a00:1",
        "2002:7f00:1::",
    ] {
        assert!(internal(a), "{a}: {:?}", classify(ip(a)));
    }
    assert_eq!(classify(ip("::ffff:93.184.216.34")), AddrClass::Public);
    assert_eq!(canonical(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
}

#[test]
fn loopback_private_and_shared_ranges_are_internal() {
    for a in [
        "127.0.0.1",
        "127.255.255.254",
        "::1",
        "10.0.0.1",
        "10.255.255.255",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.0.1",
        "192.168.255.255",
        "100.64.0.1",
        "100.127.255.255",
        "198.18.0.1",
        "fc00::1",
        "fd12:3456::1",
        "fd00:ec2::253",
    ] {
        assert!(internal(a), "{a}: {:?}", classify(ip(a)));
    }
}

#[test]
fn neighbours_of_the_ranges_are_public() {
    for a in [
        "8.8.8.8",
        "93.184.216.34",
        "169.253.255.255",
        "169.255.0.1",
        "172.15.255.255",
        "172.32.0.1",
        "192.167.255.255",
        "192.169.0.1",
        "100.63.255.255",
        "100.128.0.1",
        "11.0.0.1",
        "126.255.255.255",
        "128.0.0.1",
        "223.255.255.255",
        "1.0.0.1",
        "2606:4700:4700::1111",
        "2a00:1450:4001::1",
        "fe7f::1",
        "fb00::1",
        "fe00::1",
    ] {
        assert_eq!(classify(ip(a)), AddrClass::Public, "{a}");
    }
}

#[test]
fn production_needs_the_allowlist_for_internal_addresses() {
    let dev = Policy::new(false, &[]).unwrap();
    assert!(dev.check(None, ip("127.0.0.1")).is_ok());
    assert!(dev.check(None, ip("10.1.1.1")).is_ok());
    let e = dev.check(None, ip("169.254.169.254")).unwrap_err();
    assert!(e.always && e.reason == "link-local", "{e}");

    let prod = Policy::new(
        true,
        &[
            "10.0.0.0/8".into(),
            "fd12::/16".into(),
            "Api.Internal.Example.".into(),
            "127.0.0.2".into(),
        ],
    )
    .unwrap();
    assert!(prod.check(None, ip("8.8.8.8")).is_ok());
    assert!(prod.check(None, ip("10.9.8.7")).is_ok());
    assert!(prod.check(None, ip("::ffff:10.9.8.7")).is_ok());
    assert!(prod.check(None, ip("fd12:1::1")).is_ok());
    assert!(prod.check(None, ip("127.0.0.2")).is_ok());
    let e = prod.check(None, ip("127.0.0.1")).unwrap_err();
    assert!(!e.always && e.reason == "loopback", "{e}");
    assert!(e.to_string().contains("egress.allow"), "{e}");
    assert!(prod.check(None, ip("192.168.1.1")).is_err());
    assert!(prod
        .check(Some("other.example"), ip("192.168.1.1"))
        .is_err());
    // A host name on the list opens internal addresses for that name only.
    assert!(prod
        .check(Some("api.internal.example"), ip("192.168.1.1"))
        .is_ok());
    assert!(prod.check(Some("API.internal.example."), ip("::1")).is_ok());
    // Nothing opens the forbidden ranges.
    let open = Policy::new(true, &["0.0.0.0/0".into(), "::/0".into(), "meta".into()]).unwrap();
    for a in [
        "169.254.169.254",
        "fe80::1",
        "fd00:ec2::254",
        "::ffff:169.254.169.254",
    ] {
        assert!(open.check(Some("meta"), ip(a)).unwrap_err().always, "{a}");
    }
    assert!(open.check(None, ip("127.0.0.1")).is_ok());
}

#[test]
fn allowlist_entries_must_be_ranges_or_names() {
    for bad in [
        "10.0.0.0/33",
        "::/129",
        "not a host",
        "-bad.example",
        "a..b",
        "",
        "http://x",
    ] {
        assert!(Policy::new(true, &[bad.into()]).is_err(), "{bad}");
    }
    let c = Cidr::parse("172.16.0.0/12").unwrap();
    assert!(c.contains(ip("172.31.1.1")) && !c.contains(ip("172.32.0.0")));
    assert!(!c.contains(ip("fd00::1")));
    assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("1.2.3.4")));
}

#[test]
fn path_segments_cannot_escape_their_segment() {
    assert_eq!(path_segment("SKU-1").unwrap(), "SKU-1");
    assert_eq!(path_segment("a/b").unwrap(), "a%2Fb");
    assert_eq!(path_segment("a%2Fb").unwrap(), "a%252Fb");
    assert_eq!(path_segment("a?b#c d").unwrap(), "a%3Fb%23c%20d");
    assert_eq!(path_segment("../x").unwrap(), "..%2Fx");
    assert_eq!(path_segment("%2e%2e").unwrap(), "%252e%252e");
    assert_eq!(path_segment("...").unwrap(), "...");
    assert_eq!(path_segment("é").unwrap(), "%C3%A9");
    assert_eq!(path_segment(".."), Err(SegmentError::DotSegment));
    assert_eq!(path_segment("."), Err(SegmentError::DotSegment));
    assert_eq!(path_segment(""), Err(SegmentError::Empty));
}
