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

pub fn html(report: &Report) -> String {
    let mut rows = String::new();
    for result in &report.results {
        let (class, label, detail) = match &result.status {
            Status::Passed => ("pass", "PASS".to_owned(), String::new()),
            Status::Failed(message) => ("fail", "FAIL".to_owned(), message.clone()),
            Status::UnexpectedPass { reason } => (
                "fail",
                "UNEXPECTED PASS".to_owned(),
                format!("listed as a known failure: {reason}"),
            ),
            Status::ExpectedFailure { reason, failure } => (
                "xfail",
                "EXPECTED FAIL".to_owned(),
                format!("{reason}\n\n{failure}"),
            ),
            Status::Skipped(reason) => ("skip", "SKIP".to_owned(), reason.clone()),
        };
        rows.push_str(&format!(
            "<tr class=\"{class}\"><td>{}</td><td>{}</td><td>{label}</td><td>{:.0} ms</td><td><pre>{}</pre></td></tr>\n",
            result.workflow.name(),
            escape(&result.name),
            result.duration.as_secs_f64() * 1000.0,
            escape(&detail)
        ));
    }
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>OCI conformance: {target}</title>\n<style>\
body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;width:100%}}\
td{{border-bottom:1px solid #ddd;padding:4px 8px;vertical-align:top}}pre{{margin:0;white-space:pre-wrap}}\
.pass td:nth-child(3){{color:#080}}.fail td:nth-child(3){{color:#c00;font-weight:bold}}\
.xfail td:nth-child(3){{color:#a60}}.skip td:nth-child(3){{color:#666}}\
</style></head><body>\n<h1>OCI distribution conformance</h1>\n<p>Target: {target}</p>\n<p><strong>{summary}</strong></p>\n\
<table><tr><th>workflow</th><th>test</th><th>result</th><th>time</th><th>detail</th></tr>\n{rows}</table>\n</body></html>\n",
        target = escape(&report.target),
        summary = escape(&report.summary()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestResult;
    use std::time::Duration;

    #[test]
    fn reports_escape_hostile_text() {
        assert_eq!(
            escape("<a href=\"x\">&'\u{1}"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&apos;\u{FFFD}"
        );
        let report = Report {
            target: "t".into(),
            results: vec![TestResult {
                name: "push/x".into(),
                workflow: Workflow::Push,
                status: Status::Failed("got <html>".into()),
                duration: Duration::from_millis(5),
            }],
        };
        let xml = junit(&report);
        assert!(xml.contains("failures=\"1\"") && xml.contains("got &lt;html&gt;"));
        assert!(html(&report).contains("0 passed, 1 failed, 0 skipped"));
    }
}
