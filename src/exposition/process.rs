//! The standard `process_*` families (CPU, memory, file descriptors, start time), read from
//! `/proc/self` on every scrape.
//!
//! Linux only, no dependencies beyond `libc::sysconf`; it writes its text with
//! [`super::single`] and knows nothing about the snapshot.

use super::{Format, single};

/// The standard `process_*` families, read from `/proc/self`.
pub(super) fn write_process(out: &mut String, start_time: f64, format: Format) {
    if let Some(stat) = read_stat() {
        single(
            out,
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            "counter",
            format,
            stat.cpu_seconds,
        );
        single(
            out,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            "gauge",
            format,
            stat.vsize,
        );
        single(
            out,
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            "gauge",
            format,
            stat.rss,
        );
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        single(
            out,
            "process_open_fds",
            "Number of open file descriptors.",
            "gauge",
            format,
            fds.count() as f64,
        );
    }
    if let Some(max) = max_fds() {
        single(
            out,
            "process_max_fds",
            "Maximum number of open file descriptors.",
            "gauge",
            format,
            max,
        );
    }
    if start_time > 0.0 {
        single(
            out,
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            "gauge",
            format,
            start_time,
        );
    }
}

struct Stat {
    cpu_seconds: f64,
    vsize: f64,
    rss: f64,
    start_ticks: f64,
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

fn page_size() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 { p as f64 } else { 4096.0 }
}

fn read_stat() -> Option<Stat> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok());
    // Field numbers from proc(5), minus 3 (pid, comm and state come before `rest[1..]`).
    let ticks = clock_ticks();
    Some(Stat {
        cpu_seconds: (num(11)? + num(12)?) / ticks,
        start_ticks: num(19)?,
        vsize: num(20)?,
        rss: num(21)? * page_size(),
    })
}

fn max_fds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

pub(super) fn process_start_time() -> Option<f64> {
    let stat = read_stat()?;
    let uptime_boot = std::fs::read_to_string("/proc/stat").ok()?;
    let btime: f64 = uptime_boot
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(btime + stat.start_ticks / clock_ticks())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_metrics_are_read() {
        let mut text = String::new();
        write_process(
            &mut text,
            process_start_time().unwrap(),
            super::Format::Text,
        );
        for n in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
        ] {
            assert!(text.contains(&format!("\n{n} ")), "{n} missing from {text}");
        }
        let rss: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
            .unwrap()
            .parse()
            .unwrap();
        assert!(rss > 1e6);
    }
}
