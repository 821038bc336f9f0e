//! `nanoecr ui --unix`: the page served on a private Unix socket, the only way to drop the token.
//! Real processes and a real socket; HTTP/1.1 written by hand over a `UnixStream` (RFC 9112 §3:
//! request line, `Host` header, empty line). No daemon is needed to serve the page itself: the
//! live relay keeps retrying the absent one.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Children killed when the test ends, however it ends.
struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn nanoecr() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nanoecr"));
    c.stdin(Stdio::null());
    c
}

/// `nanoecr ui` with `args`, once it has printed its URL (first stdout line, after binding).
fn serve(args: &[&str], sock: &Path) -> (Kill, String) {
    let mut child = nanoecr()
        .arg("ui")
        .args(args)
        .arg("--unix")
        .arg(sock)
        .args(["--socket", "/nonexistent/nanoecrd.sock"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn nanoecr ui");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut first).expect("the URL line");
    (Kill(child), first.trim().to_string())
}

/// One request on a fresh connection (`Connection: close`, so the body ends at EOF): (status, body).
fn http(sock: &Path, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut s = UnixStream::connect(sock).expect("connect to the page's socket");
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: 0\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    let status = resp.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("status line: {resp}"));
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

#[test]
fn no_token_is_refused_on_tcp() {
    let out = nanoecr().args(["ui", "--no-token", "--socket", "/nonexistent/nanoecrd.sock"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let why = String::from_utf8_lossy(&out.stderr);
    assert!(why.contains("--no-token refused") && why.contains("--unix PATH"), "{why}");
    assert!(out.stdout.is_empty(), "nothing served, no URL printed");
}

#[test]
fn no_token_on_a_private_unix_socket_serves_the_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A directory that does not exist yet: created 0700.
    let sock = dir.path().join("ui").join("page.sock");
    let (_ui, url) = serve(&["--no-token"], &sock);
    assert!(url.starts_with("http+unix://%2F") && url.ends_with("page.sock/"), "{url}");
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&sock), 0o600, "the socket is the owner's only");
    assert_eq!(mode(sock.parent().expect("dir")), 0o700, "so is its directory");

    // As through `ssh -L 8080:PATH`: the browser's Host names the forwarded loopback port.
    let (code, body) = http(&sock, "GET", "/", &[("Host", "localhost:8080")]);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("<title>nanoecr"), "{body}");
    assert_eq!(http(&sock, "GET", "/assets/app.js", &[("Host", "127.0.0.1:9")]).0, 200);
    // DNS rebinding and cross-site requests are still refused.
    assert_eq!(http(&sock, "GET", "/", &[("Host", "attacker.example:8080")]).0, 403, "foreign Host");
    assert_eq!(http(&sock, "GET", "/", &[("Host", "localhost.attacker.example")]).0, 403, "foreign Host");
    let cross = [("Host", "localhost:8080"), ("Origin", "http://attacker.example")];
    assert_eq!(http(&sock, "POST", "/api/abort", &cross).0, 403, "foreign Origin");
    // The page's own Origin gets through the guard to the (absent) daemon: 502, not 403.
    let own = [("Host", "localhost:8080"), ("Origin", "http://localhost:8080")];
    let (code, body) = http(&sock, "POST", "/api/abort", &own);
    assert_eq!(code, 502, "{body}");
    assert!(body.contains("nanoecrd unreachable"), "{body}");
}

#[test]
fn a_unix_socket_keeps_the_token_unless_told_and_refuses_a_shared_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let sock = dir.path().join("page.sock");
    let (ui, url) = serve(&[], &sock);
    let token = url.split_once("/?token=").map(|(_, t)| t.to_string()).unwrap_or_else(|| panic!("{url}"));
    assert_eq!(token.len(), 32, "{url}");
    let host = [("Host", "localhost:8080")];
    assert_eq!(http(&sock, "GET", "/", &host).0, 403, "no token");
    assert_eq!(http(&sock, "GET", &format!("/?token={token}"), &host).0, 200);
    drop(ui);

    // The socket left behind by a killed `nanoecr ui` is stale: the next one replaces it.
    assert!(sock.exists(), "SIGKILL leaves the socket file");
    let (ui, _) = serve(&["--no-token"], &sock);
    assert_eq!(http(&sock, "GET", "/", &host).0, 200);
    drop(ui);

    // A directory others may enter is refused, naming it and its mode.
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).expect("mkdir");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let out = nanoecr()
        .args(["ui", "--no-token", "--socket", "/nonexistent/nanoecrd.sock", "--unix"])
        .arg(shared.join("page.sock"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "cannot serve: exit 1 (operator guide, exit codes): {out:?}");
    let why = String::from_utf8_lossy(&out.stderr);
    assert!(why.contains("has mode 755") && why.contains(&shared.display().to_string()), "{why}");
    assert!(!shared.join("page.sock").exists(), "nothing bound");
}

#[test]
fn a_closed_stdout_does_not_end_the_page_and_the_url_goes_to_stderr() {
    // `nanoecr ui` ignores SIGPIPE (like `run`), so a write to a pipe nobody reads fails with
    // EPIPE: it printed its URL with `println!`, which panicked and took the page down.
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("ui").join("page.sock");
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let mut child = nanoecr()
        .args(["ui", "--no-token", "--socket", "/nonexistent/nanoecrd.sock", "--unix"])
        .arg(&sock)
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nanoecr ui");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let ui = Kill(child);
    let mut said = String::new();
    let mut line = String::new();
    while !said.contains("serving the live view") {
        line.clear();
        let n = stderr.read_line(&mut line).expect("read stderr");
        assert!(n > 0, "nanoecr ui ended before serving; stderr: {said}");
        said.push_str(&line);
    }
    assert!(said.contains("the page is at http+unix://") && said.contains("page.sock/"), "{said}");
    assert!(!said.contains("panicked"), "{said}");
    let (code, body) = http(&sock, "GET", "/", &[("Host", "localhost:8080")]);
    assert_eq!(code, 200, "the page is served: {body}");
    drop(ui);
}
