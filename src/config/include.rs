//! `[exporter] include = ["checks.d/*.toml"]`: which files a pattern names, relative to the
//! main file's folder. Owns the (small) glob grammar — `*` and `?` in the last path component,
//! folders literal — and nothing else: reading and validating the files is [`super::parse`]'s
//! and [`super::validate`]'s job, so their problems are located like the main file's.

use std::path::{Path, PathBuf};

/// The files `pattern` names, sorted; `Err` says why it names none.
pub(super) fn expand(pattern: &str, base: &Path) -> Result<Vec<PathBuf>, String> {
    let path = base.join(pattern);
    let (dir, file) = match (path.parent(), path.file_name().and_then(|f| f.to_str())) {
        (Some(d), Some(f)) => (d.to_path_buf(), f.to_string()),
        _ => return Err("does not name a file".into()),
    };
    if dir.to_string_lossy().contains(['*', '?']) {
        return Err("wildcards are only allowed in the file name, not in folders".into());
    }
    if !file.contains(['*', '?']) {
        return if path.is_file() {
            Ok(vec![path])
        } else {
            Err(format!("{} is not a readable file", path.display()))
        };
    }
    let entries = std::fs::read_dir(&dir)
        .map_err(|e| format!("cannot read folder {}: {e}", dir.display()))?;
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file() || t.is_symlink()))
        .filter(|e| e.file_name().to_str().is_some_and(|n| wildcard(&file, n)))
        .map(|e| e.path())
        .collect();
    out.sort();
    if out.is_empty() {
        return Err(format!("matches no file in {}", dir.display()));
    }
    Ok(out)
}

/// `*` matches any run of characters, `?` one character; a leading `.` must be matched
/// literally (hidden files and editors' swap files stay out, as in a shell).
fn wildcard(pattern: &str, name: &str) -> bool {
    if name.starts_with('.') && !pattern.starts_with('.') {
        return false;
    }
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    let mut back: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                back = Some((pi, ni));
                pi += 1;
            }
            Some('?') => {
                pi += 1;
                ni += 1;
            }
            Some(c) if *c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match back {
                Some((bp, bn)) => {
                    pi = bp + 1;
                    ni = bn + 1;
                    back = Some((bp, bn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_a_shell() {
        assert!(wildcard("*.toml", "wlm.toml"));
        assert!(!wildcard("*.toml", ".toml"));
        assert!(!wildcard("*.toml", ".wlm.toml.swp"));
        assert!(!wildcard("*.toml", "wlm.toml~"));
        assert!(wildcard("pack-??.toml", "pack-01.toml"));
        assert!(!wildcard("pack-??.toml", "pack-1.toml"));
        assert!(wildcard("a*b*c", "aXXbYYc"));
        assert!(wildcard("*", "x"));
    }

    #[test]
    fn patterns_expand_relative_to_the_main_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("checks.d")).unwrap();
        for f in ["b.toml", "a.toml", "notes.txt", ".hidden.toml"] {
            std::fs::write(dir.path().join("checks.d").join(f), "").unwrap();
        }
        let got = expand("checks.d/*.toml", dir.path()).unwrap();
        let names: Vec<_> = got
            .iter()
            .map(|p| p.file_name().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["a.toml", "b.toml"]);
        assert!(
            expand("checks.d/*.yml", dir.path())
                .unwrap_err()
                .contains("matches no file")
        );
        assert!(
            expand("*/x.toml", dir.path())
                .unwrap_err()
                .contains("only allowed in the file name")
        );
        assert!(expand("checks.d/missing.toml", dir.path()).is_err());
        assert_eq!(expand("checks.d/a.toml", dir.path()).unwrap().len(), 1);
    }
}
