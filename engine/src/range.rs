//! `Content-Range` of chunk uploads and `Range` of blob reads.

use crate::response::ByteRange;

/// The chunk range a PATCH or closing PUT declares: `<first>-<last>`, inclusive. The spec's
/// grammar is `^[0-9]+-[0-9]+$`; the RFC 9110 form `bytes <first>-<last>/<total or *>` that
/// some clients send is accepted too, unless it is invalid by RFC 9110 §14.4: a complete
/// length that is not greater than `<last>` (`bytes 0-4/3`), or not a number or `*`.
pub fn parse_content_range(value: &str) -> Option<ByteRange> {
    let value = value.trim();
    let (spec, complete) = match value.strip_prefix("bytes") {
        Some(rest) => {
            let rest = rest.trim_start_matches([' ', '=']);
            match rest.split_once('/') {
                Some((range, "*")) => (range, None),
                Some((range, complete)) => (range, Some(parse_decimal(complete)?)),
                None => (rest, None),
            }
        }
        None => (value, None),
    };
    let (first, last) = spec.split_once('-')?;
    let first = parse_decimal(first)?;
    let last = parse_decimal(last)?;
    let consistent = first <= last && complete.is_none_or(|complete| last < complete);
    consistent.then_some(ByteRange { first, last })
}

/// A decimal that fits a `u64`: an upload offset or length.
fn parse_decimal(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 19 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A position or length in a `Range` header: RFC 9110's `1*DIGIT`, of any length. A value
/// beyond `u64::MAX` is as good as `u64::MAX`: no object is that large, so a first position
/// there is unsatisfiable (416), and a last position or suffix length there means "to the
/// end" (206), as a 20-digit value must (RFC 9110 §14.1.1 allows any number of digits).
fn parse_position(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.parse().unwrap_or(u64::MAX))
}

/// What a `Range` request header asks of an object of a known size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable range (absent, not `bytes`, several ranges, or malformed): send it all.
    Whole,
    /// Send this part: 206.
    Partial(ByteRange),
    /// A well-formed range that the object cannot satisfy: 416.
    Unsatisfiable,
}

/// Interprets a `Range` header against an object of `size` bytes (RFC 9110 §14.2). Only a
/// single range is honoured; a multi-range request gets the whole object, as the RFC allows.
/// A range whose last byte precedes its first is unsatisfiable (416), which is what the OCI
/// conformance suite requires.
pub fn parse_range(value: Option<&str>, size: u64) -> RangeRequest {
    let Some(value) = value else {
        return RangeRequest::Whole;
    };
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeRequest::Whole;
    };
    if spec.contains(',') {
        return RangeRequest::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Whole;
    };
    match (first.is_empty(), last.is_empty()) {
        (true, true) => RangeRequest::Whole,
        // Suffix range: the last N bytes.
        (true, false) => match parse_position(last) {
            None => RangeRequest::Whole,
            Some(0) => RangeRequest::Unsatisfiable,
            Some(_) if size == 0 => RangeRequest::Unsatisfiable,
            Some(n) => RangeRequest::Partial(ByteRange {
                first: size.saturating_sub(n),
                last: size - 1,
            }),
        },
        (false, open_end) => {
            let Some(first) = parse_position(first) else {
                return RangeRequest::Whole;
            };
            let last = if open_end {
                u64::MAX
            } else {
                match parse_position(last) {
                    Some(last) if last >= first => last,
                    // `bytes=500-0` selects nothing: 416, as the OCI conformance suite expects.
                    Some(_) => return RangeRequest::Unsatisfiable,
                    None => return RangeRequest::Whole,
                }
            };
            if first >= size {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Partial(ByteRange {
                    first,
                    last: last.min(size - 1),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(first: u64, last: u64) -> ByteRange {
        ByteRange { first, last }
    }

    #[test]
    fn content_range_accepts_the_spec_form_and_the_rfc_form() {
        assert_eq!(parse_content_range("0-99"), Some(r(0, 99)));
        assert_eq!(parse_content_range("bytes 100-199/*"), Some(r(100, 199)));
        assert_eq!(parse_content_range("bytes=5-9"), Some(r(5, 9)));
        assert_eq!(parse_content_range("9-5"), None);
        assert_eq!(parse_content_range("-5"), None);
        assert_eq!(parse_content_range("a-b"), None);
        assert_eq!(parse_content_range("99999999999999999999-1"), None);
    }

    #[test]
    fn content_range_with_a_complete_length_it_exceeds_is_invalid() {
        assert_eq!(parse_content_range("bytes 0-4/5"), Some(r(0, 4)));
        assert_eq!(parse_content_range("bytes 0-4/*"), Some(r(0, 4)));
        assert_eq!(parse_content_range("bytes 0-4/3"), None);
        assert_eq!(parse_content_range("bytes 0-4/4"), None);
        assert_eq!(parse_content_range("bytes 0-4/x"), None);
        assert_eq!(parse_content_range("bytes 0-4/"), None);
        assert_eq!(
            parse_content_range("bytes 0-4/99999999999999999999"),
            None,
            "a complete length beyond u64 is no length berth can store"
        );
    }

    #[test]
    fn range_values_of_twenty_digits_are_positions_past_any_object() {
        let huge = "99999999999999999999";
        assert_eq!(
            parse_range(Some(&format!("bytes={huge}-")), 10),
            RangeRequest::Unsatisfiable
        );
        assert_eq!(
            parse_range(Some(&format!("bytes={huge}-{huge}")), 10),
            RangeRequest::Unsatisfiable
        );
        assert_eq!(
            parse_range(Some(&format!("bytes=3-{huge}")), 10),
            RangeRequest::Partial(r(3, 9))
        );
        assert_eq!(
            parse_range(Some(&format!("bytes=-{huge}")), 10),
            RangeRequest::Partial(r(0, 9))
        );
        assert_eq!(
            parse_range(Some("bytes=0000000000000000000000003-4"), 10),
            RangeRequest::Partial(r(3, 4))
        );
        assert_eq!(
            parse_range(Some(&format!("bytes=-{huge}")), 0),
            RangeRequest::Unsatisfiable
        );
    }

    #[test]
    fn range_follows_rfc_9110() {
        assert_eq!(parse_range(None, 10), RangeRequest::Whole);
        assert_eq!(
            parse_range(Some("bytes=0-4"), 10),
            RangeRequest::Partial(r(0, 4))
        );
        assert_eq!(
            parse_range(Some("bytes=5-"), 10),
            RangeRequest::Partial(r(5, 9))
        );
        assert_eq!(
            parse_range(Some("bytes=5-100"), 10),
            RangeRequest::Partial(r(5, 9))
        );
        assert_eq!(
            parse_range(Some("bytes=-3"), 10),
            RangeRequest::Partial(r(7, 9))
        );
        assert_eq!(
            parse_range(Some("bytes=-30"), 10),
            RangeRequest::Partial(r(0, 9))
        );
        assert_eq!(
            parse_range(Some("bytes=10-"), 10),
            RangeRequest::Unsatisfiable
        );
        assert_eq!(
            parse_range(Some("bytes=0-0"), 0),
            RangeRequest::Unsatisfiable
        );
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), RangeRequest::Whole);
        assert_eq!(parse_range(Some("items=0-1"), 10), RangeRequest::Whole);
        assert_eq!(
            parse_range(Some("bytes=4-2"), 10),
            RangeRequest::Unsatisfiable
        );
        assert_eq!(parse_range(Some("bytes=4-x"), 10), RangeRequest::Whole);
    }
}
