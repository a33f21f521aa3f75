//! The grammars of repository names, tags and upload ids.
//!
//! Every name that reaches a storage key passes through here first: the grammars admit no
//! `..`, no leading `/`, no `%`, and no component starting with `_`, so a request can never
//! address a key outside its repository, nor collide with berth's own `_`-prefixed keys.

/// Longest repository name accepted. The spec bounds name plus registry host to 255
/// characters; without knowing the host we accept the whole 255.
pub const MAX_NAME_LEN: usize = 255;

/// Longest tag the spec's grammar allows (`[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`).
pub const MAX_TAG_LEN: usize = 128;

/// Longest path component of a repository name (the text between two `/`), berth's own limit
/// below the spec's grammar, which sets none. A name component is a segment of storage keys
/// (`_catalog/<name>`, `repositories/<name>/…`), and the directory backend stores each key
/// segment as a file or directory name: filesystems allow 255 bytes per name, an object's
/// file is its last segment plus `@`, and the backend refuses segments above 250 bytes (it
/// checks this constant at compile time). A name that routing accepts must be storable on every
/// backend, so the limit is here, the same for all of them, and a longer component gets 400
/// `NAME_INVALID` before anything is written, rather than a 500 from one backend after a blob
/// pointer was already published. What this refuses is only names with a component of
/// 251–255 characters, which most clients cannot address anyway: they count the registry's
/// host name and a `/` into their 255-character limit (the spec's implementers' note), so
/// `localhost:5000/` leaves a name 240.
///
/// With this, the longest key berth writes is a referrer entry of a 255-character name with
/// sha512 digests: `repositories/<255>/_refs/sha512/<128 hex>/sha512-<128 hex>`, 546 bytes
/// (plus an S3 prefix): within the 1024 bytes S3 and R2 allow.
pub const MAX_COMPONENT_LEN: usize = 250;

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`, at most
/// [`MAX_NAME_LEN`] characters and [`MAX_COMPONENT_LEN`] per component.
pub fn is_valid_repository_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN && name.split('/').all(is_valid_path_component)
}

fn is_valid_path_component(component: &str) -> bool {
    if component.len() > MAX_COMPONENT_LEN {
        return false;
    }
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    // A component is runs of [a-z0-9]+ joined by one separator: ".", "_", "__" or "-+".
    loop {
        let start = i;
        while i < bytes.len() && alnum(bytes[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == bytes.len() {
            return true;
        }
        match bytes[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if bytes.get(i) == Some(&b'_') {
                    i += 1;
                }
            }
            b'-' => {
                while bytes.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            _ => return false,
        }
    }
}

/// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`
pub fn is_valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    match bytes.first() {
        Some(b) if b.is_ascii_alphanumeric() || *b == b'_' => {}
        _ => return false,
    }
    bytes.len() <= MAX_TAG_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Upload ids are minted by berth as 32 lowercase hex characters.
pub fn is_valid_upload_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_follow_the_spec_grammar() {
        for ok in [
            "a",
            "library/ubuntu",
            "a.b",
            "a_b",
            "a__b",
            "a---b",
            "x/y/z0",
            "0",
        ] {
            assert!(is_valid_repository_name(ok), "{ok}");
        }
        for bad in [
            "",
            "A",
            "a/",
            "/a",
            "a//b",
            "a..b",
            "a___b",
            "-a",
            "a-",
            "_a",
            "a/_layers",
            "../x",
            "a%2fb",
            "a b",
        ] {
            assert!(!is_valid_repository_name(bad), "{bad}");
        }
        assert!(!is_valid_repository_name(&"a".repeat(256)));
        assert!(is_valid_repository_name(&"a".repeat(250)));
        assert!(!is_valid_repository_name(&"a".repeat(251)));
        assert!(!is_valid_repository_name(&format!("x/{}", "a".repeat(251))));
        // The longest names: 255 characters, no component above 250.
        assert!(is_valid_repository_name(&format!(
            "{}/{}",
            "a".repeat(250),
            "b".repeat(4)
        )));
        assert!(is_valid_repository_name(&format!(
            "{}/{}",
            "a".repeat(4),
            "b".repeat(250)
        )));
    }

    #[test]
    fn tags_follow_the_spec_grammar() {
        for ok in ["latest", "v1.2.3", "_x", "A-b_c.d", &"a".repeat(128)] {
            assert!(is_valid_tag(ok), "{ok}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", &"a".repeat(129)] {
            assert!(!is_valid_tag(bad), "{bad}");
        }
    }
}
