//! The HTML pages in a real browser: Debian's headless Chromium, driven by playwright-core
//! (`tests/browser/page.mjs`), against `redshift-exporter demo`. Loads `/`, follows a check
//! link, at desktop (1280 px) and phone (390 px) widths and in dark mode; fails on console
//! errors, failed requests, or a page wider than the viewport. Screenshots land in
//! `target/browser/` for a person to look at.
//!
//! Needs `/usr/bin/chromium` (`apt-get install chromium`; `CHROMIUM` overrides the path),
//! `node` and `npm ci` in `tests/browser` (`.ci/run` does all three).

use std::path::Path;
use std::process::Command;

use crate::support::demo::Demo;
use crate::support::secs;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_render_in_chromium_at_desktop_and_phone_widths() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: apt-get install -y chromium (or set CHROMIUM)"
    );
    assert!(
        root.join("tests/browser/node_modules/playwright-core")
            .exists(),
        "playwright-core is missing: (cd tests/browser && npm ci)"
    );

    let mut demo = Demo::start(secs(90)).await;
    let listen = demo.addr;

    let out = root.join("target/browser");
    let run = tokio::task::spawn_blocking({
        let (root, out, chromium) = (root.to_path_buf(), out.clone(), chromium.clone());
        move || {
            Command::new("node")
                .arg(root.join("tests/browser/page.mjs"))
                .arg(format!("http://{listen}/"))
                .arg(&out)
                .env("CHROMIUM", chromium)
                .output()
                .expect("node runs")
        }
    });
    let output = tokio::time::timeout(secs(240), run)
        .await
        .expect("the browser run finishes within 4 minutes")
        .unwrap();

    demo.signal(libc::SIGINT);
    demo.wait_exit(secs(30), "after SIGINT").await;

    assert!(
        output.status.success(),
        "browser test failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    for shot in [
        "landing-desktop.png",
        "landing-phone.png",
        "check-phone.png",
    ] {
        let len = std::fs::metadata(out.join(shot))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(len > 1000, "{shot} missing or empty");
    }
}
