//! Fuzz target: `config::parse` on arbitrary text must return `Ok` or a list of problems, never
//! panic. `${VAR}` references resolve to nothing, so no environment is read. A `password_file`
//! key would read a file: such inputs are skipped (reading arbitrary paths is not the point).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if text.contains("password_file") {
        return;
    }
    if let Ok(config) = redshift_exporter::config::parse(text, |_| None) {
        // A valid configuration can also be linted and printed.
        let _ = config.lint();
        let _ = format!("{config:?}");
    }
});
