//! Backstage's default field-format rules (`FieldFormatEntityPolicy` and the validator functions
//! behind it), as plain functions over `&str`.
//!
//! They are hand-written rather than regular expressions because they run for every field of
//! every document and the validator has a throughput budget (see `docs/benchmarks.md`).
//! Lengths are counted in UTF-16 code units like JavaScript's `String.length`; since every rule
//! but the annotation value only admits ASCII, that only matters for rejecting non-ASCII input.

/// `^[a-z0-9]+(-+[a-z0-9]+)*$`, 1 to 63 characters: a DNS label (RFC 1123, which allows runs of
/// hyphens inside), as used for namespaces and for each part of a prefix.
pub fn is_dns_label(value: &str) -> bool {
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > 63 {
        return false;
    }
    let first = bytes[0];
    let last = bytes[bytes.len() - 1];
    let lower_alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    lower_alnum(first) && lower_alnum(last) && bytes.iter().all(|&b| lower_alnum(b) || b == b'-')
}

/// A DNS subdomain: 1 to 253 characters, dot-separated DNS labels.
pub fn is_dns_subdomain(value: &str) -> bool {
    !value.is_empty() && value.len() <= 253 && value.split('.').all(is_dns_label)
}

/// `^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`, 1 to 63 characters: entity names, label
/// values, link icons. Note that consecutive separators (`a--b`, `a._b`) are accepted, as
/// upstream's regular expression accepts them.
pub fn is_object_name(value: &str) -> bool {
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > 63 {
        return false;
    }
    let first = bytes[0];
    let last = bytes[bytes.len() - 1];
    first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// `^[a-zA-Z][a-z0-9A-Z]*$`, 1 to 63 characters.
pub fn is_kind(value: &str) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_alphabetic()
        && bytes.iter().all(u8::is_ascii_alphanumeric)
}

/// `<suffix>` or `<dns-subdomain>/<suffix>` where the suffix is `^[a-zA-Z0-9]+$`, 1 to 63.
pub fn is_api_version(value: &str) -> bool {
    is_prefix_and_or_suffix(value, is_dns_subdomain, |suffix| {
        !suffix.is_empty() && suffix.len() <= 63 && suffix.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// `<name>` or `<dns-subdomain>/<name>`, the name following [`is_object_name`]; used for label and
/// annotation keys.
pub fn is_label_key(value: &str) -> bool {
    is_prefix_and_or_suffix(value, is_dns_subdomain, is_object_name)
}

/// Annotation keys follow the label-key rule.
pub fn is_annotation_key(value: &str) -> bool {
    is_label_key(value)
}

/// The empty string or an object name.
pub fn is_label_value(value: &str) -> bool {
    value.is_empty() || is_object_name(value)
}

/// Tags: `^[a-z0-9:+#]+(-[a-z0-9:+#]+)*$`, 1 to 63 characters. The colon is accepted by current
/// upstream sources although upstream's error message still omits it; no corpus document decides,
/// see `docs/compatibility.md`.
pub fn is_tag(value: &str) -> bool {
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > 63 {
        return false;
    }
    let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b':' || b == b'+' || b == b'#';
    is_separated(bytes, allowed, |b| b == b'-')
}

/// An absolute URL by the WHATWG URL standard, the rule JavaScript's `new URL(value)` applies.
pub fn is_url(value: &str) -> bool {
    url::Url::parse(value).is_ok()
}

/// A string that is not empty after trimming whitespace.
pub fn is_non_empty_trimmed(value: &str) -> bool {
    !value.trim().is_empty()
}

/// `runs of allowed bytes, separated by single separator bytes`.
fn is_separated(bytes: &[u8], allowed: impl Fn(u8) -> bool, separator: impl Fn(u8) -> bool) -> bool {
    let mut previous_was_separator = true;
    for &b in bytes {
        if separator(b) {
            if previous_was_separator {
                return false;
            }
            previous_was_separator = true;
        } else if allowed(b) {
            previous_was_separator = false;
        } else {
            return false;
        }
    }
    !previous_was_separator
}

fn is_prefix_and_or_suffix(value: &str, prefix: impl Fn(&str) -> bool, suffix: impl Fn(&str) -> bool) -> bool {
    let mut parts = value.split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(only), None, None) => suffix(only),
        (Some(p), Some(s), None) => prefix(p) && suffix(s),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in [
            "a",
            "a1",
            "my-service",
            "My_Service.v2",
            "a--b",
            "a._b",
            &"x".repeat(63),
        ] {
            assert!(is_object_name(ok), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "a b",
            "a/b",
            "jeff@example.com",
            "${{ values.name }}",
            &"x".repeat(64),
        ] {
            assert!(!is_object_name(bad), "{bad}");
        }
    }

    #[test]
    fn namespaces_and_labels() {
        assert!(is_dns_label("default"));
        assert!(is_dns_label("team-a1"));
        assert!(!is_dns_label("Team"));
        assert!(is_dns_label("a--b"));
        assert!(!is_dns_label("a-"));
        assert!(!is_dns_label("-a"));
        assert!(is_dns_subdomain("backstage.io"));
        assert!(!is_dns_subdomain("backstage..io"));
        assert!(is_label_key("backstage.io/managed-by-location"));
        assert!(is_label_key("simple"));
        assert!(!is_label_key("roadie.io/tech-insights/repository-location"));
        assert!(!is_label_key("pulumi:com/project-slug"));
        assert!(is_label_value(""));
        assert!(!is_label_value("has space"));
    }

    #[test]
    fn kinds_and_api_versions() {
        assert!(is_kind("Component"));
        assert!(!is_kind("1Component"));
        assert!(!is_kind("my-kind"));
        assert!(is_api_version("backstage.io/v1alpha1"));
        assert!(is_api_version("v1"));
        assert!(!is_api_version("backstage.io"));
        assert!(!is_api_version("a/b/c"));
    }

    #[test]
    fn tags() {
        for ok in ["java", "c++", "c#", "web-app", "go1", "lang:go"] {
            assert!(is_tag(ok), "{ok}");
        }
        for bad in ["", "Nextjs", "reveal.js", "a--b", "-a", "a-", "has space"] {
            assert!(!is_tag(bad), "{bad}");
        }
    }

    #[test]
    fn urls() {
        assert!(is_url("https://example.com/x"));
        assert!(is_url("mailto:team@example.com"));
        assert!(!is_url("example.com/x"));
        assert!(!is_url(""));
        assert!(is_non_empty_trimmed(" a "));
        assert!(!is_non_empty_trimmed("  "));
    }
}
