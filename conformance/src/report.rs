//! JUnit XML and a self-contained HTML page for a [`Report`].

use crate::{Report, Status, Workflow};

/// Escapes text for XML and HTML alike.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 cannot carry at all.
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\r' | '\t') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// JUnit XML as CI systems read it: one `<testsuite>` per workflow, one `<testcase>` per test.
/// A failure (or an unexpected pass) is a `<failure>` whose text is the full explanation; an
/// expected failure passes with its explanation in `<system-out>`; a skip says why.
pub fn junit(report: &Report) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!(
        "<testsuites name=\"OCI distribution conformance\" tests=\"{}\" failures=\"{}\" skipped=\"{}\">\n",
        report.results.len(),
        report.failed(),
        report.skipped()
    ));
    for workflow in Workflow::ALL {
        let results: Vec<_> = report
            .results
            .iter()
            .filter(|r| r.workflow == workflow)
            .collect();
        if results.is_empty() {
            continue;
        }
        let failures = results
            .iter()
            .filter(|r| r.status.counts_as_failure())
            .count();
        let time: f64 = results.iter().map(|r| r.duration.as_secs_f64()).sum();
        out.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" time=\"{time:.3}\">\n",
            workflow.name(),
            results.len()
        ));
        for result in results {
            out.push_str(&format!(
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
                workflow.name(),
                escape(&result.name),
                result.duration.as_secs_f64()
            ));
            match &result.status {
                Status::Passed => out.push_str("/>\n"),
                Status::Failed(message) => out.push_str(&format!(
                    "><failure message=\"{}\">{}</failure></testcase>\n",
                    escape(message.lines().next().unwrap_or("")),
                    escape(message)
                )),
                Status::UnexpectedPass { reason } => out.push_str(&format!(
                    "><failure message=\"passed but listed as a known failure ({})\"/></testcase>\n",
                    escape(reason)
                )),
                Status::ExpectedFailure { reason, failure } => out.push_str(&format!(
                    "><system-out>expected failure ({}): {}</system-out></testcase>\n",
                    escape(reason),
                    escape(failure)
                )),
                Status::Skipped(reason) => out.push_str(&format!("><skipped message=\"{}\"/></testcase>\n", escape(reason))),
            }
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// A self-contained HTML page (inline CSS, no scripts, no external resources): the summary,
/// then one row per test with its spec section linked and, for anything but a pass, the full
/// explanation (what was sent, what came back, what the spec requires).
pub fn html(report: &Report) -> String {
    let mut rows = String::new();
    for result in &report.results {
        let (class, label, detail) = match &result.status {
            Status::Passed => ("pass", "PASS", String::new()),
            Status::Failed(message) => ("fail", "FAIL", message.clone()),
            Status::UnexpectedPass { reason } => (
                "fail",
                "UNEXPECTED PASS",
                format!(
                    "listed as a known failure ({reason}), but it passed: remove it from the expectations"
                ),
            ),
            Status::ExpectedFailure { reason, failure } => (
                "xfail",
                "EXPECTED FAILURE",
                format!("expected: {reason}\n\n{failure}"),
            ),
            Status::Skipped(reason) => ("skip", "SKIP", reason.clone()),
        };
        let detail = if detail.is_empty() {
            String::new()
        } else {
            let first = detail.lines().next().unwrap_or("");
            format!(
                "<details><summary>{}</summary><pre>{}</pre></details>",
                escape(first),
                escape(&detail)
            )
        };
        rows.push_str(&format!(
            "<tr class=\"{class}\"><td>{}</td><td><code>{}</code></td><td class=\"status\">{label}</td><td>{:.0} ms</td><td><a href=\"{}#{}\">{}</a></td><td>{detail}</td></tr>\n",
            result.workflow.name(),
            escape(&result.name),
            result.duration.as_secs_f64() * 1000.0,
            crate::SPEC_URL,
            crate::spec_anchor(result.spec_section),
            escape(result.spec_section),
        ));
    }
    let expected = report.expected_failures();
    let expected_note = if expected > 0 {
        format!(" ({expected} expected failures not counted)")
    } else {
        String::new()
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>OCI conformance: {target}</title>\n<style>\
body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;width:100%}}\
th{{text-align:left;border-bottom:2px solid #999;padding:4px 8px}}\
td{{border-bottom:1px solid #ddd;padding:4px 8px;vertical-align:top}}pre{{margin:.5em 0;white-space:pre-wrap;font-size:.85em}}\
summary{{cursor:pointer}}.pass .status{{color:#080}}.fail .status{{color:#c00;font-weight:bold}}\
.fail{{background:#fff4f4}}.xfail .status{{color:#a60}}.skip .status{{color:#666}}\
</style></head><body>\n<h1>OCI distribution conformance</h1>\n<p>Target: <code>{target}</code></p>\n<p><strong>{summary}</strong>{expected_note}</p>\n\
<p>Requirements from <a href=\"{spec}\">the OCI distribution spec</a>; failures show the exchange that broke them.</p>\n\
<table><tr><th>workflow</th><th>test</th><th>result</th><th>time</th><th>spec</th><th>detail</th></tr>\n{rows}</table>\n</body></html>\n",
        target = escape(&report.target),
        summary = escape(&report.summary()),
        spec = crate::SPEC_URL,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestResult;
    use std::time::Duration;

    fn result(name: &str, workflow: Workflow, status: Status) -> TestResult {
        TestResult {
            name: name.into(),
            workflow,
            spec_section: "Pushing Manifests",
            status,
            duration: Duration::from_millis(5),
        }
    }

    fn sample() -> Report {
        Report {
            target: "http://127.0.0.1:5000/?a=<b>&c".into(),
            results: vec![
                result("pull/ok", Workflow::Pull, Status::Passed),
                result(
                    "push/x",
                    Workflow::Push,
                    Status::Failed("got <html> & \"quotes\" 'here'\n  body: \u{1}\u{0}]]>".into()),
                ),
                result(
                    "push/known",
                    Workflow::Push,
                    Status::ExpectedFailure {
                        reason: "no <referrers>".into(),
                        failure: "404 & more".into(),
                    },
                ),
                result(
                    "discovery/fixed",
                    Workflow::ContentDiscovery,
                    Status::UnexpectedPass {
                        reason: "n \"ignored\"".into(),
                    },
                ),
                result(
                    "management/s",
                    Workflow::ContentManagement,
                    Status::Skipped("why: <reason>".into()),
                ),
            ],
        }
    }

    #[test]
    fn escaping_covers_markup_quotes_and_characters_xml_cannot_carry() {
        assert_eq!(
            escape("<a href=\"x\">&'\u{1}\t\n"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&apos;\u{FFFD}\t\n"
        );
        assert_eq!(escape("plain ünïcode"), "plain ünïcode");
    }

    #[test]
    fn junit_is_well_formed_and_counts_like_the_report() {
        let report = sample();
        let xml = junit(&report);
        let doc = roxmltree::Document::parse(&xml).expect("well-formed XML");
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "testsuites");
        assert_eq!(root.attribute("tests"), Some("5"));
        assert_eq!(root.attribute("failures"), Some("2"));
        assert_eq!(root.attribute("skipped"), Some("1"));
        let cases: Vec<_> = doc
            .descendants()
            .filter(|n| n.has_tag_name("testcase"))
            .collect();
        assert_eq!(cases.len(), 5);
        let failed = cases
            .iter()
            .find(|c| c.attribute("name") == Some("push/x"))
            .unwrap();
        let failure = failed
            .children()
            .find(|n| n.has_tag_name("failure"))
            .unwrap();
        assert_eq!(
            failure.attribute("message"),
            Some("got <html> & \"quotes\" 'here'")
        );
        assert!(
            failure
                .text()
                .unwrap()
                .contains("body: \u{FFFD}\u{FFFD}]]>")
        );
        let expected = cases
            .iter()
            .find(|c| c.attribute("name") == Some("push/known"))
            .unwrap();
        assert!(expected.children().all(|n| !n.has_tag_name("failure")));
        let skipped = cases
            .iter()
            .find(|c| c.attribute("name") == Some("management/s"))
            .unwrap();
        let skip = skipped
            .children()
            .find(|n| n.has_tag_name("skipped"))
            .unwrap();
        assert_eq!(skip.attribute("message"), Some("why: <reason>"));
    }

    #[test]
    fn html_is_self_contained_and_escapes_everything() {
        let page = html(&sample());
        assert!(page.contains("1 passed, 2 failed, 1 skipped"));
        assert!(page.contains("1 expected failures not counted"));
        assert!(page.contains("got &lt;html&gt; &amp;"));
        assert!(page.contains("http://127.0.0.1:5000/?a=&lt;b&gt;&amp;c"));
        assert!(!page.contains("<html>&") && !page.contains("<reason>"));
        assert!(page.contains("spec.md#pushing-manifests"));
        assert!(!page.contains("<script") && !page.contains("<link") && !page.contains("src="));
    }
}
