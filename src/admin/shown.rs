//! What the admin API shows of a task's error: the queries of URLs in it redacted (presigned
//! URLs carry credentials there), and cut to a page.

/// `text` with the query of every URL in it replaced by `<redacted>` (presigned URLs carry
/// credentials there).
pub(super) fn scrub_urls(text: &str) -> String {
    static URL_QUERY: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r#"(?i)(\b[a-z][a-z0-9+.-]*://[^\s"'<>?#]*)\?[^\s"'<>]*"#)
            .expect("a valid pattern")
    });
    URL_QUERY.replace_all(text, "$1?<redacted>").into_owned()
}

/// The most of a task's error its answers show.
const MAX_SHOWN_ERROR: usize = 4096;

/// A task's error as answers show it: URLs' queries scrubbed, and cut to a page (every
/// `/v1/tasks` and status answer carries it; the log holds it whole).
pub(super) fn error(error: &str) -> String {
    let mut error = scrub_urls(error);
    if error.len() > MAX_SHOWN_ERROR {
        let end = crate::decode::cut(&error, MAX_SHOWN_ERROR).len();
        error.truncate(end);
        error.push_str("… (cut; the log holds it whole)");
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_queries_are_scrubbed() {
        let e = "PUT https://b.s3.amazonaws.com/k.parquet?X-Amz-Signature=abc&X-Amz-Credential=AK failed: 403, see http://h/x";
        let s = scrub_urls(e);
        assert!(!s.contains("abc") && !s.contains("AK"), "{s}");
        assert!(
            s.contains("https://b.s3.amazonaws.com/k.parquet?<redacted> failed: 403"),
            "{s}"
        );
        assert!(s.ends_with("see http://h/x"), "{s}");
    }

    #[test]
    fn a_long_error_is_shown_cut() {
        let e = format!("header: {}", "é,".repeat(100_000));
        let s = error(&e);
        assert!(s.len() < MAX_SHOWN_ERROR + 64, "{} bytes", s.len());
        assert!(s.ends_with("(cut; the log holds it whole)"), "{s}");
        assert_eq!(error("short"), "short");
    }
}
