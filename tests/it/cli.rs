//! The command line: `check-config` problem reports with TOML paths and line numbers, `${VAR}`
//! expansion, `once` output lines and exit codes, and start-up failure when the port is taken.

use std::time::Duration;

use crate::support::*;

/// 1-based number of the first line of `text` that contains `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in config"))
        + 1
}

/// The stderr line reporting `path` (exactly `path`, or a sub-path such as `path[0]` / `path.x`).
fn problem_line<'a>(stderr: &'a str, path: &str) -> Option<&'a str> {
    stderr.lines().map(str::trim).find(|l| {
        l.strip_prefix(path)
            .is_some_and(|rest| rest.starts_with([' ', ':', '[', '.']) || rest.is_empty())
    })
}

/// `N` from `... (line N): ...`, if present.
fn reported_line(line: &str) -> Option<usize> {
    let rest = &line[line.find("(line ")? + 6..];
    rest[..rest.find(')')?].trim().parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_reports_every_problem_with_its_position() {
    let db = database().await;
    let work = WorkDir::new();
    let good_checks = check_toml(
        "good_one",
        "SELECT 1 AS v",
        "values = [\"v\"]\ninterval = \"5s\"",
    ) + &check_toml(
        "other",
        "SELECT 1 AS v",
        "values = [\"v\"]\ntargets = [\"main\"]",
    );
    let good = format!(
        "{}\n{}\n{good_checks}",
        exporter_toml(&work.archive(), ""),
        db.target_toml("main", "")
    );
    let out = check_config(&work.write("good.toml", &good)).await;
    assert_eq!(out.code, Some(0), "a valid file:\n{}", out.dump());
    assert!(
        out.stdout.contains("good_one") && out.stdout.contains("other"),
        "check-config prints a summary naming the checks:\n{}",
        out.dump()
    );

    let bad_checks = check_toml(
        "good_one",
        "SELECT 1 AS v",
        "values = [\"v\"]\nlables = [\"x\"]",
    ) + &check_toml(
        "bad_duration",
        "SELECT 1 AS v",
        "values = [\"v\"]\ninterval = \"5x\"",
    ) + &check_toml("Bad-Name", "SELECT 1 AS v", "values = [\"v\"]")
        + &check_toml("good_one", "SELECT 2 AS v", "values = [\"v\"]")
        + &check_toml(
            "wrong_target",
            "SELECT 1 AS v",
            "values = [\"v\"]\ntargets = [\"nope\"]",
        );
    let bad = format!(
        "{}\n{}\n{bad_checks}",
        exporter_toml(&work.archive(), "bogus_key = 1"),
        db.target_toml("main", "")
    );
    let out = check_config(&work.write("bad.toml", &bad)).await;
    assert_eq!(out.code, Some(2), "an invalid file:\n{}", out.dump());

    // (path with check index written as {i}, 0-based index, config line, words the message must contain)
    let second_good_one = bad.match_indices("name = \"good_one\"").nth(1).unwrap().0;
    let dup_line = bad[..second_good_one].lines().count() + 1;
    let problems: Vec<(String, Option<usize>, usize, Vec<&str>)> = vec![
        (
            "exporter.bogus_key".into(),
            None,
            line_of(&bad, "bogus_key"),
            vec![],
        ),
        (
            "checks[{i}].lables".into(),
            Some(0),
            line_of(&bad, "lables"),
            vec![],
        ),
        (
            "checks[{i}].interval".into(),
            Some(1),
            line_of(&bad, "\"5x\""),
            vec!["5x"],
        ),
        (
            "checks[{i}].name".into(),
            Some(2),
            line_of(&bad, "Bad-Name"),
            vec!["Bad-Name"],
        ),
        (
            "checks[{i}].name".into(),
            Some(3),
            dup_line,
            vec!["good_one"],
        ),
        (
            "checks[{i}].targets".into(),
            Some(4),
            line_of(&bad, "\"nope\""),
            vec!["nope"],
        ),
    ];
    // The contract's example `checks[2].interval` does not say whether indexes are 0- or 1-based:
    // accept either, but the same base for every problem.
    let mut best: Option<(usize, Vec<String>)> = None;
    for base in [0, 1] {
        let mut failures = Vec::new();
        for (path, index, line, words) in &problems {
            let path = match index {
                Some(i) => path.replace("{i}", &(i + base).to_string()),
                None => path.clone(),
            };
            let Some(reported) = problem_line(&out.stderr, &path) else {
                failures.push(format!("no line for {path} (config line {line})"));
                continue;
            };
            // a check name problem must not be satisfied by the other check's line
            let reported = if path.ends_with(".name") {
                out.stderr
                    .lines()
                    .map(str::trim)
                    .filter(|l| l.starts_with(&path))
                    .find(|l| words.iter().all(|w| l.contains(w)))
                    .unwrap_or(reported)
            } else {
                reported
            };
            for w in words {
                if !reported.contains(w) {
                    failures.push(format!(
                        "{path}: message does not mention {w:?}: {reported}"
                    ));
                }
            }
            match reported_line(reported) {
                Some(n) if n != *line => failures.push(format!(
                    "{path}: reported line {n}, expected {line}: {reported}"
                )),
                None if path.ends_with(".interval") => failures.push(format!(
                    "{path}: no \"(line N)\" for a value with a known position: {reported}"
                )),
                _ => {}
            }
        }
        if best.as_ref().is_none_or(|(_, f)| failures.len() < f.len()) {
            best = Some((base, failures));
        }
    }
    let (base, failures) = best.unwrap();
    assert!(
        failures.is_empty(),
        "check-config problems (checks[] indexes taken as {base}-based):\n  {}\n--- config ---\n{}\n{}",
        failures.join("\n  "),
        bad.lines()
            .enumerate()
            .map(|(i, l)| format!("{:3} {l}", i + 1))
            .collect::<Vec<_>>()
            .join("\n"),
        out.dump()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_environment_variables_are_all_reported() {
    let db = database().await;
    db.execute("CREATE TABLE only_here (v int); INSERT INTO only_here VALUES (3);")
        .await;
    let work = WorkDir::new();
    let checks = check_toml("envy", "SELECT v FROM only_here", "values = [\"v\"]");

    let missing = format!(
        "{}\n{}\n{checks}",
        exporter_toml(&work.archive(), ""),
        db.target_toml(
            "main",
            "host = \"${A_MISSING_VAR}\"\nuser = \"${ANOTHER_MISSING}\""
        )
    );
    let unset = vec!["A_MISSING_VAR".to_owned(), "ANOTHER_MISSING".to_owned()];
    let path = work.write("missing.toml", &missing);
    let out = run_cli(
        vec![
            "check-config".into(),
            "--config".into(),
            path.to_string_lossy().into(),
        ],
        vec![],
        unset.clone(),
        secs(30),
    )
    .await;
    assert_eq!(out.code, Some(2), "{}", out.dump());
    for (key, var) in [
        ("targets.main.host", "A_MISSING_VAR"),
        ("targets.main.user", "ANOTHER_MISSING"),
    ] {
        let line = problem_line(&out.stderr, key)
            .unwrap_or_else(|| panic!("no problem line for {key}:\n{}", out.dump()));
        assert!(line.contains(var), "{key} line must name {var}: {line}");
    }
    let out = run_cli(
        vec![
            "once".into(),
            "--config".into(),
            path.to_string_lossy().into(),
        ],
        vec![],
        unset.clone(),
        secs(30),
    )
    .await;
    assert_eq!(
        out.code,
        Some(2),
        "`once` with missing variables:\n{}",
        out.dump()
    );
    assert!(
        out.stderr.contains("A_MISSING_VAR") && out.stderr.contains("ANOTHER_MISSING"),
        "{}",
        out.dump()
    );

    // ${VAR} from the environment and ${VAR:-default} for an unset variable
    let expanded = format!(
        "{}\n{}\n{checks}",
        exporter_toml(&work.archive(), ""),
        db.target_toml(
            "main",
            &format!(
                "host = \"${{RSE_IT_HOST}}\"\ndatabase = \"${{RSE_IT_UNSET_DB:-{}}}\"",
                db.dbname
            )
        )
    );
    let path = work.write("expanded.toml", &expanded);
    let out = run_cli(
        vec![
            "once".into(),
            "--config".into(),
            path.to_string_lossy().into(),
        ],
        vec![("RSE_IT_HOST".into(), db.host.clone())],
        vec!["RSE_IT_UNSET_DB".into()],
        secs(30),
    )
    .await;
    assert_eq!(
        out.code,
        Some(0),
        "${{VAR}} and ${{VAR:-default}} must expand:\n{}",
        out.dump()
    );
    assert!(
        out.stdout.contains("ok check=envy target=main rows=1"),
        "{}",
        out.dump()
    );
}

/// `key=value` fields of a `once` output line (up to `error=`, whose value is the rest of the line).
fn once_fields(line: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = line.split_once(' ').map(|x| x.1).unwrap_or_default();
    while !rest.is_empty() {
        if let Some(msg) = rest.strip_prefix("error=") {
            out.push(("error".into(), msg.into()));
            break;
        }
        let (word, tail) = rest.split_once(' ').unwrap_or((rest, ""));
        match word.split_once('=') {
            Some((k, v)) => out.push((k.into(), v.into())),
            None => out.push((word.into(), String::new())),
        }
        rest = tail;
    }
    out
}

fn get<'a>(fields: &'a [(String, String)], key: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn is_duration(s: &str) -> bool {
    s.strip_suffix('s')
        .is_some_and(|n| !n.is_empty() && n.parse::<f64>().is_ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_prints_one_line_per_check_and_sets_the_exit_code() {
    let db = database().await;
    let work = WorkDir::new();
    let ok_checks = check_toml("ok_a", "SELECT 1 AS v", "values = [\"v\"]")
        + &check_toml(
            "ok_b",
            "SELECT g::text AS k, g AS v FROM generate_series(1, 3) g",
            "labels = [\"k\"]\nvalues = [\"v\"]",
        );
    let base = format!(
        "{}\n{}\n",
        exporter_toml(&work.archive(), ""),
        db.target_toml("main", "")
    );
    let all_ok = work.write("ok.toml", &(base.clone() + &ok_checks));

    let out = once(&all_ok, &[]).await;
    assert_eq!(out.code, Some(0), "{}", out.dump());
    let lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(
        lines.len(),
        2,
        "one line per check × target:\n{}",
        out.dump()
    );
    for (check, rows) in [("ok_a", "1"), ("ok_b", "3")] {
        let line = lines
            .iter()
            .find(|l| l.starts_with(&format!("ok check={check} ")))
            .unwrap_or_else(|| panic!("no `ok check={check}` line:\n{}", out.dump()));
        let f = once_fields(line);
        assert_eq!(get(&f, "target"), Some("main"), "{line}");
        assert_eq!(get(&f, "rows"), Some(rows), "{line}");
        assert!(
            get(&f, "duration").is_some_and(is_duration),
            "duration=N.NNNs: {line}"
        );
        let file = get(&f, "file").unwrap_or_else(|| panic!("no file= in {line}"));
        let file = std::path::Path::new(file);
        assert!(file.is_file(), "file={} does not exist", file.display());
        assert_eq!(
            file.parent().unwrap().canonicalize().unwrap(),
            work.archive()
                .join("main")
                .join(check)
                .canonicalize()
                .unwrap(),
            "{line}"
        );
    }

    let with_bad = work.write(
        "bad.toml",
        &(base.clone()
            + &ok_checks
            + &check_toml("bad", "SELECT v FROM no_such_table", "values = [\"v\"]")),
    );
    let out = once(&with_bad, &[]).await;
    assert_eq!(out.code, Some(1), "a failing check:\n{}", out.dump());
    let err = out
        .stdout
        .lines()
        .find(|l| l.starts_with("error check=bad "))
        .unwrap_or_else(|| panic!("no `error check=bad` line:\n{}", out.dump()));
    let f = once_fields(err);
    assert_eq!(get(&f, "target"), Some("main"), "{err}");
    assert_eq!(get(&f, "kind"), Some("query"), "{err}");
    assert!(get(&f, "duration").is_some_and(is_duration), "{err}");
    assert!(
        get(&f, "error").is_some_and(|e| e.contains("no_such_table")),
        "the error names the problem: {err}"
    );
    assert_eq!(
        out.stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        2,
        "{}",
        out.dump()
    );

    let out = once(&with_bad, &["--check", "ok_a"]).await;
    assert_eq!(
        out.code,
        Some(0),
        "--check ok_a runs only ok_a:\n{}",
        out.dump()
    );
    let lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "{}", out.dump());
    assert!(
        lines[0].starts_with("ok check=ok_a target=main "),
        "{}",
        out.dump()
    );

    let out = once(&with_bad, &["--check", "ok_b", "--check", "bad"]).await;
    assert_eq!(out.code, Some(1), "--check is repeatable:\n{}", out.dump());
    assert_eq!(
        out.stdout.lines().filter(|l| !l.trim().is_empty()).count(),
        2,
        "{}",
        out.dump()
    );

    let broken = work.write(
        "broken.toml",
        &(base + &ok_checks + "unknown_key_in_last_check = true\n"),
    );
    let out = once(&broken, &[]).await;
    assert_eq!(out.code, Some(2), "a config error:\n{}", out.dump());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_already_taken_exits_two() {
    let db = database().await;
    let work = WorkDir::new();
    let cfg = work.write(
        "checks.toml",
        &config_toml(
            &work,
            &db,
            &check_toml("p", "SELECT 1 AS v", "values = [\"v\"]"),
        ),
    );
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap().to_string();
    let mut d = Daemon::spawn(&cfg, &addr, &[], &[]);
    let status = d.wait_exit(Duration::from_secs(15)).await;
    assert_eq!(
        status.code(),
        Some(2),
        "port {addr} in use: {status}; logs:\n{}",
        d.log_text()
    );
    drop(holder);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_config_flag_means_run() {
    let db = database().await;
    let work = WorkDir::new();
    let cfg = work.write(
        "checks.toml",
        &config_toml(
            &work,
            &db,
            &check_toml("bare", "SELECT 4 AS v", "values = [\"v\"]"),
        ),
    );
    let args: Vec<String> = [
        "--config",
        &cfg.to_string_lossy(),
        "--web.listen-address",
        "127.0.0.1:0",
        "--log.format",
        "json",
    ]
    .map(String::from)
    .to_vec();
    let mut d = Daemon::spawn_raw(&args, &[]);
    d.wait_listening(secs(15)).await;
    d.wait_metrics("the check to run", secs(10), |m| {
        m.get("itest_bare_v", &[("target", "main")]) == Some(4.0)
    })
    .await;
    d.sigterm();
    assert_eq!(d.wait_exit(secs(15)).await.code(), Some(0));
}
