//! The HTML building blocks every page shares: the stylesheet, escaping, the document head,
//! navigation and footer, and how times, durations and values are written.
//!
//! Owns: text formatting only. Does not own: what a page shows (`landing`, `detail`) or
//! when it is rendered again (`cache`). Nothing here reads the store.

use std::fmt::Write as _;

const CSS: &str = concat!(
    ":root{color-scheme:light dark;--bg:#fff;--fg:#1f2328;--muted:#656d76;--line:#d0d7de;",
    "--card:#f6f8fa;--ok:#1a7f37;--warn:#9a6700;--crit:#cf222e;--link:#0969da}",
    "@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#8d96a0;",
    "--line:#30363d;--card:#161b22;--ok:#3fb950;--warn:#d29922;--crit:#f85149;--link:#4493f8}}",
    "*{box-sizing:border-box}html{-webkit-text-size-adjust:100%}",
    "body{margin:0 auto;max-width:75rem;padding:.75rem 1rem 2rem;background:var(--bg);color:var(--fg);",
    "font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif}",
    "a{color:var(--link)}h1{font-size:1.35rem;margin:.3rem 0}h2{font-size:1.1rem;margin:0}",
    "h3{font-size:1rem;margin:1rem 0 .3rem}header p,footer{color:var(--muted);font-size:.85rem}",
    "nav{display:flex;flex-wrap:wrap;gap:.2rem 1rem;font-size:.9rem}",
    ".card{background:var(--card);border:1px solid var(--line);border-radius:8px;",
    "padding:.75rem 1rem;margin:1rem 0;min-width:0}",
    ".head{display:flex;flex-wrap:wrap;align-items:center;gap:.3rem .6rem}",
    ".scroll{overflow-x:auto;max-width:100%;border:1px solid var(--line);border-radius:6px;background:var(--bg)}",
    "table{border-collapse:collapse;font-size:.88rem;width:100%}",
    "th,td{border-bottom:1px solid var(--line);padding:.25rem .55rem;text-align:left;",
    "vertical-align:top;white-space:nowrap}th{font-weight:600}td.num{text-align:right}",
    "td.null::after{content:'NULL';color:var(--muted);font-style:italic}",
    "pre{margin:0;padding:.6rem;overflow-x:auto;font-size:.82rem;white-space:pre}",
    "code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}",
    ".badge{display:inline-block;min-width:3.2rem;text-align:center;padding:0 .4rem;",
    "border-radius:1rem;font-size:.75rem;font-weight:700;border:1px solid currentColor;",
    "text-transform:uppercase}",
    ".ok{color:var(--ok)}.warn{color:var(--warn)}.crit,.fail{color:var(--crit)}.muted{color:var(--muted)}",
    "ul.att{list-style:none;padding:0;margin:.5rem 0}",
    "ul.att li{padding:.35rem 0;border-top:1px solid var(--line);overflow-wrap:anywhere}",
    "ul.att .msg{display:block;color:var(--muted);font-size:.85rem;margin-left:.2rem}",
    "details{margin:.5rem 0}summary{cursor:pointer;font-weight:600}",
    "dl{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:.2rem .8rem;margin:.5rem 0}",
    "dt{color:var(--muted)}dd{margin:0;overflow-wrap:anywhere}",
    "ul.skip{padding-left:1.2rem;overflow-wrap:anywhere}",
    "p.checks{margin:.4rem 0;line-height:1.9}p.checks a{margin-right:.35rem;white-space:nowrap}",
    "p.checks a::before{content:'● '}p.checks a.ok::before{color:var(--ok)}",
    "p.checks a.warn::before{color:var(--warn)}p.checks a.crit::before,p.checks a.fail::before{color:var(--crit)}",
    "p.checks a.pending::before{color:var(--muted)}",
);

/// The bytes [`push_esc`] replaces: one load per byte instead of five comparisons (every
/// name and label on the pages goes through it).
const ESCAPED: [bool; 256] = {
    let mut t = [false; 256];
    t[b'&' as usize] = true;
    t[b'<' as usize] = true;
    t[b'>' as usize] = true;
    t[b'"' as usize] = true;
    t[b'\'' as usize] = true;
    t
};

/// HTML-escapes `s` into `out`.
pub(super) fn push_esc(out: &mut String, s: &str) {
    // Most text has nothing to escape: one tight scan, then one copy.
    if !s.bytes().any(|b| ESCAPED[b as usize]) {
        out.push_str(s);
        return;
    }
    let mut from = 0;
    for (i, b) in s.bytes().enumerate() {
        let rep = match b {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\'' => "&#39;",
            _ => continue,
        };
        out.push_str(&s[from..i]);
        out.push_str(rep);
        from = i + 1;
    }
    out.push_str(&s[from..]);
}

/// `s` HTML-escaped.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    push_esc(&mut out, s);
    out
}

/// The document up to `<body>`: meta tags, the title and the inline stylesheet.
pub(super) fn head(h: &mut String, title: &str) {
    h.push_str("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">");
    // No favicon request (it would be a 404 in every browser's console).
    h.push_str("<meta name=\"color-scheme\" content=\"light dark\"><link rel=\"icon\" href=\"data:,\"><title>");
    push_esc(h, title);
    h.push_str("</title><style>");
    h.push_str(CSS);
    h.push_str("</style></head><body>");
}

/// Unix seconds as UTC text.
pub(super) fn utc(t: f64) -> String {
    chrono::DateTime::from_timestamp(t as i64, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

/// Now, in Unix seconds.
pub(super) fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// "3 min ago" and the like.
pub(super) fn ago(t: f64, now: f64) -> String {
    if t <= 0.0 {
        return String::new();
    }
    format!("{} ago", span((now - t).max(0.0)))
}

/// A duration in seconds, short: "45 s", "12 min", "2 h 5 min", "3 d 4 h".
pub(super) fn span(s: f64) -> String {
    let s = s.round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86400 => match (s % 3600) / 60 {
            0 => format!("{} h", s / 3600),
            m => format!("{} h {m} min", s / 3600),
        },
        _ => format!("{} d {} h", s / 86400, (s % 86400) / 3600),
    }
}

/// A number without noise, written to `h`: integers plain, others with up to 4 significant
/// decimals. No allocation of its own: the landing page writes two per listed finding.
pub(super) fn push_number(h: &mut String, v: f64) {
    if !v.is_finite() {
        let _ = write!(h, "{v}");
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        push_int(h, v as i64);
    } else if v.abs() < 1e11 {
        // Four decimals in integer arithmetic: the formatter's `{:.4}` takes its exact path
        // (bignum arithmetic), which cost more than the rest of a listed finding. Below 1e11
        // the scaled value stays under 2^53, where a double holds every integer.
        let scaled = (v.abs() * 10_000.0).round() as u64;
        if v < 0.0 && scaled > 0 {
            h.push('-');
        }
        push_int(h, (scaled / 10_000) as i64);
        let mut frac = scaled % 10_000;
        if frac > 0 {
            let mut digits = 4;
            while frac % 10 == 0 {
                frac /= 10;
                digits -= 1;
            }
            h.push('.');
            for d in (0..digits).rev() {
                h.push(char::from(b'0' + (frac / 10u64.pow(d) % 10) as u8));
            }
        }
    } else {
        let from = h.len();
        let _ = write!(h, "{v:.4}");
        let kept = h[from..].trim_end_matches('0').trim_end_matches('.').len();
        h.truncate(from + kept);
    }
}

/// An integer in decimal, without the formatting machinery (the landing page writes a few
/// per target and two per listed finding).
pub(super) fn push_int(h: &mut String, n: i64) {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    let mut m = n.unsigned_abs();
    loop {
        at -= 1;
        buf[at] = b'0' + (m % 10) as u8;
        m /= 10;
        if m == 0 {
            break;
        }
    }
    if n < 0 {
        h.push('-');
    }
    h.reserve(buf.len() - at);
    h.extend(buf[at..].iter().map(|&d| char::from(d)));
}

/// A value in the unit its metric name says (`_ratio` → %, `_seconds` → time, `_bytes`).
pub(super) fn value_text(metric: &str, v: f64) -> String {
    let mut h = String::new();
    push_value(&mut h, metric, v);
    h
}

/// [`value_text`], written to `h`. What it writes is HTML-safe (digits, signs, units).
pub(super) fn push_value(h: &mut String, metric: &str, v: f64) {
    if !v.is_finite() {
        let _ = write!(h, "{v}");
    } else if metric.ends_with("_ratio") {
        push_number(h, (v * 1000.0).round() / 10.0);
        h.push_str(" %");
    } else if metric.ends_with("_seconds") && v >= 60.0 {
        h.push_str(&span(v));
    } else if metric.ends_with("_seconds") {
        push_number(h, v);
        h.push_str(" s");
    } else if metric.ends_with("_bytes") && v >= 1024.0 {
        let units = ["KiB", "MiB", "GiB", "TiB", "PiB"];
        let mut x = v / 1024.0;
        let mut u = 0;
        while x >= 1024.0 && u + 1 < units.len() {
            x /= 1024.0;
            u += 1;
        }
        push_number(h, (x * 10.0).round() / 10.0);
        h.push(' ');
        h.push_str(units[u]);
    } else {
        push_number(h, v);
    }
}

/// A check or target name: validated as `[a-z_][a-z0-9_-]*`, so nothing to escape (the
/// common case, taken without the per-byte scan); anything else is escaped all the same.
pub(super) fn push_name(h: &mut String, name: &str) {
    if name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        h.push_str(name);
    } else {
        push_esc(h, name);
    }
}

/// The links at the top of every page; `prefix` leads back to the root (`""` on `/`).
pub(super) fn nav(h: &mut String, prefix: &str) {
    let home = if prefix.is_empty() { "./" } else { prefix };
    let _ = write!(
        h,
        "<nav><a href=\"{home}\">Overview</a><a href=\"{prefix}metrics\">Metrics</a>\
         <a href=\"{prefix}-/healthy\">Health</a><a href=\"{prefix}-/ready\">Readiness</a></nav>"
    );
}

/// Where the thresholds come from, and the version; closes the document.
pub(super) fn footer(h: &mut String) {
    let _ = write!(
        h,
        "<footer><p>Thresholds are the <code>warn</code> / <code>crit</code> keys of each value \
         column in the configuration (the shipped <code>checks.toml</code> uses those of the \
         shipped alert rules, <code>deploy/prometheus/rules/redshift.rules.yml</code>; the alerts \
         also wait their <code>for:</code> time). Values are from each check's last run; this \
         page never queries the database. redshift-exporter {}.</p></footer></body></html>",
        env!("CARGO_PKG_VERSION")
    );
    h.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(value_text("redshift_disk_used_ratio", 0.94), "94 %");
        assert_eq!(value_text("x_ratio", 0.1234), "12.3 %");
        assert_eq!(value_text("x_seconds", 7200.0), "2 h");
        assert_eq!(value_text("x_seconds", 45.5), "45.5 s");
        assert_eq!(
            value_text("x_bytes", 3.0 * 1024.0 * 1024.0 * 1024.0),
            "3 GiB"
        );
        assert_eq!(value_text("x_queries", 3.0), "3");
        assert_eq!(value_text("x", 0.123456), "0.1235");
        // Written after what is there: only its own zeros are trimmed.
        let mut h = String::from("100");
        push_number(&mut h, 2.5);
        push_value(&mut h, "x_ratio", 0.5);
        push_number(&mut h, -0.25);
        assert_eq!(h, "1002.550 %-0.25");
        // The integer path of `push_number` agrees with the formatter's `{:.4}` (but for a
        // value within a rounding error of a tie, such as 99.99995: the scaled product rounds
        // up where the exact decimal expansion, 99.999949…, rounds down), and writes "0" where
        // the formatter writes "-0".
        for v in [
            0.0001,
            0.00004,
            0.00006,
            1.5,
            -1.5,
            12.3456,
            99.99994,
            -0.00004,
            1e10 + 0.25,
            123456.789,
            -42.0,
            7.0,
            0.1,
            0.7,
            1e14 + 0.5,
            -3.0e-9,
        ] {
            let mut ours = String::new();
            push_number(&mut ours, v);
            let fmt = format!("{v:.4}");
            let fmt = fmt.trim_end_matches('0').trim_end_matches('.');
            let fmt = if fmt == "-0" { "0" } else { fmt };
            let fmt = if v.fract() == 0.0 {
                format!("{}", v as i64)
            } else {
                fmt.to_string()
            };
            assert_eq!(ours, fmt, "{v}");
        }
        let mut ints = String::new();
        for n in [0, 7, -7, 1234567890123, i64::MIN, i64::MAX] {
            ints.clear();
            push_int(&mut ints, n);
            assert_eq!(ints, n.to_string());
        }
        assert_eq!(span(3720.0), "1 h 2 min");
    }

    #[test]
    fn escapes_and_names() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        let mut h = String::new();
        push_name(&mut h, "disk_used-2");
        push_name(&mut h, "<x>");
        assert_eq!(h, "disk_used-2&lt;x&gt;");
    }
}
