//! The two exposition formats and the choice between them: the Prometheus text format
//! 0.0.4 and OpenMetrics 1.0.0, negotiated from `Accept`. Owns what differs between them
//! (family metadata lines, HELP escaping, the `# EOF` line); the samples themselves are
//! the same bytes in both and are written by the rest of [`super`].

use std::fmt::Write as _;

use super::{CONTENT_TYPE, escape};

/// The exposition formats a scrape can ask for with `Accept`. The samples are the same
/// bytes in both; they differ in the metadata of counters (OpenMetrics names the family
/// without its `_total` suffix), in HELP escaping (OpenMetrics also escapes `"`) and in the
/// `# EOF` line OpenMetrics ends with. Real Prometheus servers ask for OpenMetrics first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`: the default, and what `promtool check metrics` reads.
    Text,
    /// `application/openmetrics-text; version=1.0.0` (also answers `version=0.0.1`, which
    /// has the same syntax for the gauge and counter families the exporter has).
    OpenMetrics(OpenMetricsVersion),
}

/// The OpenMetrics version the scrape named, echoed in the response's content type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMetricsVersion {
    V1_0_0,
    V0_0_1,
}

impl Format {
    /// How many header variants a family keeps (text, OpenMetrics).
    pub(crate) const COUNT: usize = 2;
    pub(super) const ALL: [Format; Format::COUNT] = [
        Format::Text,
        Format::OpenMetrics(OpenMetricsVersion::V1_0_0),
    ];

    /// Which header variant this format uses.
    pub(super) const fn index(self) -> usize {
        match self {
            Format::Text => 0,
            Format::OpenMetrics(_) => 1,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => CONTENT_TYPE,
            Format::OpenMetrics(OpenMetricsVersion::V1_0_0) => {
                "application/openmetrics-text; version=1.0.0; charset=utf-8"
            }
            Format::OpenMetrics(OpenMetricsVersion::V0_0_1) => {
                "application/openmetrics-text; version=0.0.1; charset=utf-8"
            }
        }
    }

    /// The format an `Accept` header prefers (RFC 9110 §12.5.1 quality values; the first
    /// listed wins a tie). No header, or nothing we serve in it: the text format, as
    /// Prometheus' own client libraries do.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text;
        };
        let mut best: Option<(f32, Format)> = None;
        for range in accept.split(',') {
            let mut params = range.split(';').map(str::trim);
            let media = params.next().unwrap_or("").to_ascii_lowercase();
            let (mut q, mut version) = (1.0f32, None);
            for p in params {
                let Some((k, v)) = p.split_once('=') else {
                    continue;
                };
                match k.trim().to_ascii_lowercase().as_str() {
                    "q" => q = v.trim().parse().unwrap_or(0.0),
                    "version" => version = Some(v.trim().trim_matches('"').to_string()),
                    _ => {}
                }
            }
            let format = match (media.as_str(), version.as_deref()) {
                ("application/openmetrics-text", None | Some("1.0.0")) => {
                    Format::OpenMetrics(OpenMetricsVersion::V1_0_0)
                }
                ("application/openmetrics-text", Some("0.0.1")) => {
                    Format::OpenMetrics(OpenMetricsVersion::V0_0_1)
                }
                ("text/plain" | "text/*" | "*/*", None | Some("0.0.4")) => Format::Text,
                _ => continue,
            };
            if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
                best = Some((q, format));
            }
        }
        best.map_or(Format::Text, |(_, f)| f)
    }
}

/// The line OpenMetrics ends an exposition with.
pub(super) const EOF: &[u8] = b"# EOF\n";

/// A family's `# HELP` and `# TYPE` lines in `format`. `help` is raw text: the text format
/// escapes `\\` and newlines in it, OpenMetrics also `"`. OpenMetrics names a counter
/// family without the `_total` its samples carry (a 0.0.4 parser takes the sample name).
pub(super) fn header(out: &mut String, name: &str, help: &str, kind: &str, format: Format) {
    let om = format != Format::Text;
    let family = match (om, kind) {
        (true, "counter") => name.strip_suffix("_total").unwrap_or(name),
        _ => name,
    };
    let _ = writeln!(
        out,
        "# HELP {family} {}\n# TYPE {family} {kind}",
        escape(help, om)
    );
}

/// What OpenMetrics 1.0.0 asks of the structure of an exposition of gauges and counters,
/// checked line by line (test support; a real Prometheus scrapes it in tests/it): every
/// family declared once, metadata before its samples, counter families named without
/// `_total` and their samples with it, gauge samples named as their family, values in the
/// canonical spelling, `# EOF` last.
#[cfg(test)]
pub(crate) fn check_open_metrics(text: &str) -> Result<(), String> {
    let body = text
        .strip_suffix("# EOF\n")
        .ok_or("does not end with `# EOF`")?;
    let mut seen = std::collections::HashSet::new();
    let mut family: Option<(&str, &str)> = None;
    let mut help: Option<&str> = None;
    for (n, line) in body.lines().enumerate() {
        let at = |m: &str| format!("line {}: {m}: {line}", n + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest.split(' ').next().unwrap_or(""));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .ok_or_else(|| at("TYPE without a kind"))?;
            if help.is_some_and(|h| h != name) {
                return Err(at("HELP and TYPE name different families"));
            }
            if !seen.insert(name) {
                return Err(at("family declared twice"));
            }
            if kind == "counter" && name.ends_with("_total") {
                return Err(at("counter family named with _total"));
            }
            family = Some((name, kind));
            help = None;
        } else if line.starts_with('#') || line.is_empty() {
            return Err(at("unexpected line"));
        } else {
            let (fam, kind) = family.ok_or_else(|| at("sample before any family"))?;
            let name = line.split(['{', ' ']).next().unwrap_or("");
            let ok = match kind {
                "counter" => name.strip_suffix("_total") == Some(fam),
                "gauge" => name == fam,
                _ => false,
            };
            if !ok {
                return Err(at(&format!("sample not of family {fam} ({kind})")));
            }
            let value = line.rsplit(' ').next().unwrap_or("");
            if !(matches!(value, "+Inf" | "-Inf" | "NaN")
                || value.parse::<f64>().is_ok_and(f64::is_finite))
            {
                return Err(at("value not in canonical form"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checker_catches_what_open_metrics_forbids() {
        let good = "# HELP a_seconds h\n# TYPE a_seconds gauge\na_seconds{x=\"1\"} 2\n# HELP c h\n# TYPE c counter\nc_total 3\n# EOF\n";
        assert_eq!(check_open_metrics(good), Ok(()));
        for bad in [
            good.trim_end_matches("# EOF\n"),
            "# TYPE c_total counter\nc_total 1\n# EOF\n",
            "# TYPE c counter\nc 1\n# EOF\n",
            "# TYPE g gauge\ng 1\n# TYPE g gauge\n# EOF\n",
            "# TYPE g gauge\ng inf\n# EOF\n",
            "g 1\n# EOF\n",
        ] {
            assert!(check_open_metrics(bad).is_err(), "{bad}");
        }
    }

    const OM1: Format = Format::OpenMetrics(OpenMetricsVersion::V1_0_0);

    #[test]
    fn accept_headers_of_real_scrapers_pick_the_format_they_prefer() {
        let cases: [(Option<&str>, Format); 9] = [
            (None, Format::Text),
            (Some("*/*"), Format::Text),
            (Some("text/plain"), Format::Text),
            // Prometheus 2.x (scrape/scrape.go, acceptHeader).
            (
                Some(
                    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                ),
                OM1,
            ),
            // Prometheus 3.x default scrape_protocols.
            (
                Some(
                    "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1",
                ),
                OM1,
            ),
            // scrape_protocols: [PrometheusText0.0.4] only.
            (Some("text/plain;version=0.0.4;q=1,*/*;q=0.1"), Format::Text),
            (
                Some("application/openmetrics-text; version=0.0.1"),
                Format::OpenMetrics(OpenMetricsVersion::V0_0_1),
            ),
            // Refused outright, or a version we do not speak: the text format.
            (Some("application/openmetrics-text;q=0"), Format::Text),
            (
                Some("application/openmetrics-text;version=2.0.0"),
                Format::Text,
            ),
        ];
        for (accept, want) in cases {
            assert_eq!(Format::negotiate(accept), want, "{accept:?}");
        }
        assert_eq!(
            OM1.content_type(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
    }

    #[test]
    fn open_metrics_names_counter_families_without_total_and_escapes_quotes() {
        let mut text = String::new();
        header(
            &mut text,
            "x_total",
            "say \"hi\"\\",
            "counter",
            Format::Text,
        );
        assert_eq!(
            text,
            "# HELP x_total say \"hi\"\\\\\n# TYPE x_total counter\n"
        );
        let mut om = String::new();
        header(&mut om, "x_total", "say \"hi\"\\", "counter", OM1);
        assert_eq!(om, "# HELP x say \\\"hi\\\"\\\\\n# TYPE x counter\n");
        let mut gauge = String::new();
        header(&mut gauge, "y_seconds", "h", "gauge", OM1);
        assert_eq!(gauge, "# HELP y_seconds h\n# TYPE y_seconds gauge\n");
    }
}
