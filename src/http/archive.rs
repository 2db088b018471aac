//! `GET /archive/{target}/{check}/{file}`: one archive file, only when `archive_serve = true`.
//!
//! Reached through [`super::handle`], after authentication, so it inherits the TLS and
//! basic-auth settings of `/metrics`. The path must be exactly three components that name
//! a valid archive file ([`layout::valid_relative`]): no `..`, no separators, no percent
//! escapes, no hidden or temporary files; the file must be a regular file (not a symlink)
//! under the archive root. Anything else is 404, so traversal is impossible by construction.

use std::path::Path;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Response, StatusCode, header};

use super::text;
use crate::archive::layout;

/// The route prefix.
pub const PREFIX: &str = "/archive/";

/// The link to a file, for the landing page; `None` if the path is not an archive file.
pub fn href(root: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(root).ok()?;
    let parts: Vec<&str> = rel.iter().filter_map(|p| p.to_str()).collect();
    match parts.as_slice() {
        [t, c, f] if layout::valid_relative(t, c, f) => Some(format!("{PREFIX}{t}/{c}/{f}")),
        _ => None,
    }
}

/// Answers a request under [`PREFIX`]; `root` is `None` when serving is off.
pub async fn serve(root: Option<&Path>, method: &Method, path: &str) -> Response<Full<Bytes>> {
    let Some(root) = root else {
        return text(
            StatusCode::NOT_FOUND,
            "not found; archive files are served only with archive_serve = true\n",
        );
    };
    if method != Method::GET && method != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
    }
    let rel = path.strip_prefix(PREFIX).unwrap_or("");
    let parts: Vec<&str> = rel.split('/').collect();
    let [t, c, f] = parts.as_slice() else {
        return text(StatusCode::NOT_FOUND, "not found\n");
    };
    if !layout::valid_relative(t, c, f) {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    let file = root.join(t).join(c).join(f);
    match tokio::fs::symlink_metadata(&file).await {
        Ok(m) if m.is_file() => {}
        _ => return text(StatusCode::NOT_FOUND, "not found\n"),
    }
    let body = match tokio::fs::read(&file).await {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return text(StatusCode::NOT_FOUND, "not found\n");
        }
        Err(e) => {
            tracing::warn!(path = %file.display(), error = %e, "cannot read an archive file");
            return text(StatusCode::INTERNAL_SERVER_ERROR, "cannot read the file\n");
        }
    };
    let content_type = if f.ends_with(".gz") {
        "application/gzip"
    } else {
        "text/csv; charset=utf-8"
    };
    let body = if method == Method::HEAD {
        Bytes::new()
    } else {
        Bytes::from(body)
    };
    Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{f}\""),
        )
        .body(Full::new(body))
        .expect("validated header values")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn get(root: Option<&Path>, path: &str) -> (StatusCode, String) {
        let r = serve(root, &Method::GET, path).await;
        let status = r.status();
        let body = r.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn serves_archive_files_only_and_never_escapes_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("archive");
        let f = root.join("main/c");
        std::fs::create_dir_all(&f).unwrap();
        std::fs::write(f.join("c_20260101T000000.000Z.csv"), "x\n1\n").unwrap();
        std::fs::write(f.join(".c_20260101T000000.000Z.csv.tmp"), "partial").unwrap();
        std::fs::write(dir.path().join("secret.csv"), "password\n").unwrap();
        std::fs::write(root.join("main/c_20260101T000000.000Z.csv"), "x\n").unwrap();
        std::os::unix::fs::symlink(
            dir.path().join("secret.csv"),
            f.join("c_20260102T000000.000Z.csv"),
        )
        .unwrap();
        let root = Some(root.as_path());

        let (s, body) = get(root, "/archive/main/c/c_20260101T000000.000Z.csv").await;
        assert_eq!((s, body.as_str()), (StatusCode::OK, "x\n1\n"));
        for bad in [
            "/archive/main/c/../../secret.csv",
            "/archive/../secret.csv",
            "/archive/main/../../secret.csv",
            "/archive/main/c/..%2F..%2Fsecret.csv",
            "/archive/main/%2e%2e/c_20260101T000000.000Z.csv",
            "/archive/main/c/.c_20260101T000000.000Z.csv.tmp",
            "/archive/main/c_20260101T000000.000Z.csv",
            "/archive/main/c/c_20260102T000000.000Z.csv", // symlink out of the root
            "/archive/main/c/c_20260103T000000.000Z.csv", // missing
            "/archive/main/d/c_20260101T000000.000Z.csv", // wrong check
            "/archive//c/c_20260101T000000.000Z.csv",
            "/archive/main/c/c_20260101T000000.000Z.csv/",
            "/archive/",
        ] {
            let (s, body) = get(root, bad).await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{bad}");
            assert!(!body.contains("password"), "{bad}");
        }
        // Off: nothing is served.
        let (s, _) = get(None, "/archive/main/c/c_20260101T000000.000Z.csv").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let r = serve(
            root,
            &Method::POST,
            "/archive/main/c/c_20260101T000000.000Z.csv",
        )
        .await;
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);

        let rootp = dir.path().join("archive");
        assert_eq!(
            href(&rootp, &f.join("c_20260101T000000.000Z.csv")).as_deref(),
            Some("/archive/main/c/c_20260101T000000.000Z.csv")
        );
        assert_eq!(href(&rootp, &dir.path().join("secret.csv")), None);
    }
}
