//! Allowed domains (SPEC §4 "Site: allowed domains"): which page hosts may use a site's
//! widget. A host matches an allowed domain when it is that domain or one of its
//! subdomains (`www.shop.example` matches `shop.example`; `evilshop.example` does not).

/// The host of an absolute `http(s)` URL or an `Origin` header, lower-cased (IDNs in
/// their ASCII form); `None` when there is none.
pub(crate) fn host_of(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url.trim()).ok()?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return None;
    }
    parsed.host_str().map(|h| h.trim_end_matches('.').to_ascii_lowercase()).filter(|h| !h.is_empty())
}

/// An allowed-domain entry as written by an admin (`shop.example`, `*.shop.example`,
/// `https://shop.example/`), reduced to its host.
fn normalise(entry: &str) -> Option<String> {
    let entry = entry.trim();
    if entry.contains("://") {
        return host_of(entry);
    }
    let bare = entry.trim_start_matches("*.").trim_start_matches('.');
    let bare = bare.split(['/', ':']).next().unwrap_or_default();
    match url::Host::parse(bare) {
        Ok(host) => Some(host.to_string().trim_end_matches('.').to_ascii_lowercase()).filter(|h| !h.is_empty()),
        Err(_) => None,
    }
}

/// Whether `host` is one of `allowed` or a subdomain of one.
pub(crate) fn allowed(host: &str, allowed: &[String]) -> bool {
    let host = host.to_ascii_lowercase();
    allowed.iter().filter_map(|d| normalise(d)).any(|d| {
        host == d || (host.len() > d.len() && host.ends_with(&d) && host.as_bytes()[host.len() - d.len() - 1] == b'.')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn hosts_come_from_origins_and_urls() {
        assert_eq!(host_of("https://www.Shop.example"), Some("www.shop.example".into()));
        assert_eq!(host_of("https://shop.example:8443/cart?x=1"), Some("shop.example".into()));
        assert_eq!(host_of("null"), None);
        assert_eq!(host_of("file:///etc/passwd"), None);
        assert_eq!(host_of("/relative/path"), None);
    }

    #[test]
    fn a_domain_allows_itself_and_its_subdomains_only() {
        let domains = list(&["shop.example", "*.other.example", "https://Third.example/"]);
        assert!(allowed("shop.example", &domains));
        assert!(allowed("www.shop.example", &domains));
        assert!(allowed("a.b.shop.example", &domains));
        assert!(allowed("x.other.example", &domains));
        assert!(allowed("third.example", &domains));
        assert!(!allowed("evilshop.example", &domains));
        assert!(!allowed("shop.example.evil.example", &domains));
        assert!(!allowed("evil.example", &domains));
        assert!(!allowed("example", &domains));
    }
}
