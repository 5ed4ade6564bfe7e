//! The image `scripts/image` builds (what the test node runs) and the published Dockerfile agree: user,
//! entrypoint, command, exposed port, labels, the copied binary and what the distroless base provides (the
//! nonroot user, CA certificates, /tmp). The image is also runnable as built: every shared library the binary
//! needs is in it (the Dockerfile's musl binary needs none; ours is a glibc build).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The instructions of the Dockerfile's final stage, continuation lines joined: (INSTRUCTION, arguments).
fn final_stage(dockerfile: &str) -> Vec<(String, String)> {
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let t = line.trim();
        if current.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(t);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    let start = joined.iter().rposition(|l| l.to_uppercase().starts_with("FROM ")).expect("a FROM line");
    joined[start..]
        .iter()
        .map(|l| {
            let (ins, args) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
            (ins.to_uppercase(), args.trim().to_string())
        })
        .collect()
}

fn one<'a>(stage: &'a [(String, String)], ins: &str) -> &'a str {
    let all: Vec<_> = stage.iter().filter(|(i, _)| i == ins).collect();
    assert_eq!(all.len(), 1, "the final stage has one {ins}: {stage:?}");
    &all[0].1
}

/// `LABEL a="x" b="y"` pairs.
fn labels(args: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = args.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let after = after.trim_start();
        let (value, tail) = match after.strip_prefix('"') {
            Some(q) => q.split_once('"').expect("closing quote"),
            None => after.split_once(char::is_whitespace).unwrap_or((after, "")),
        };
        out.insert(key.trim().to_string(), value.to_string());
        rest = tail.trim();
    }
    out
}

#[test]
fn dockerfile_stage_parsing() {
    let text = "FROM a AS b\nRUN x \\\n  y\n# c\nFROM z:nonroot\nLABEL k=\"v w\" \\\n      j=\"u\"\nUSER 1:2\n";
    let stage = final_stage(text);
    assert_eq!(stage[0], ("FROM".into(), "z:nonroot".into()));
    assert_eq!(one(&stage, "USER"), "1:2");
    let l = labels(one(&stage, "LABEL"));
    assert_eq!(l.get("k").map(String::as_str), Some("v w"));
    assert_eq!(l.get("j").map(String::as_str), Some("u"));
}

/// Runs `tar` and fails with its output when it fails.
fn tar(args: &[&str]) -> String {
    let out = Command::new("tar").args(args).output().expect("run tar");
    assert!(out.status.success(), "tar {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

fn json_file(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn blob(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs/sha256").join(digest.strip_prefix("sha256:").expect("sha256 digest"))
}

/// Builds the image archive from the test's own binary and unpacks it: (config, layer listing, rootfs dir).
fn build_image(work: &Path) -> (Value, String, PathBuf) {
    let archive = work.join("image.oci.tar");
    let out = Command::new(repo().join("scripts/image"))
        .args(["--binary", env!("CARGO_BIN_EXE_smtp-operator"), "--tag", "image-test", "--out"])
        .arg(&archive)
        .output()
        .expect("run scripts/image");
    assert!(out.status.success(), "scripts/image failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().last(), Some("docker.io/library/smtp-operator:image-test"));

    let layout = work.join("layout");
    std::fs::create_dir_all(&layout).unwrap();
    tar(&["-xf", archive.to_str().unwrap(), "-C", layout.to_str().unwrap()]);
    let index = json_file(&layout.join("index.json"));
    let entry = &index["manifests"][0];
    assert_eq!(entry["annotations"]["io.containerd.image.name"], "docker.io/library/smtp-operator:image-test");
    let manifest = json_file(&blob(&layout, entry["digest"].as_str().unwrap()));
    let config = json_file(&blob(&layout, manifest["config"]["digest"].as_str().unwrap()));
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "a single layer");
    let layer = blob(&layout, layers[0]["digest"].as_str().unwrap());
    let listing = tar(&["--numeric-owner", "-tvf", layer.to_str().unwrap()]);
    let rootfs = work.join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    tar(&["--no-same-owner", "-xf", layer.to_str().unwrap(), "-C", rootfs.to_str().unwrap()]);
    (config, listing, rootfs)
}

/// The listing line of `path` in `tar -tv` output (mode, owner, …).
fn entry<'a>(listing: &'a str, path: &str) -> &'a str {
    listing
        .lines()
        .find(|l| l.split_whitespace().nth(5).map(|p| p.trim_end_matches('/')) == Some(path))
        .unwrap_or_else(|| panic!("{path} is not in the image:\n{listing}"))
}

#[test]
fn the_script_image_matches_the_dockerfile() {
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).expect("read Dockerfile");
    let stage = final_stage(&dockerfile);
    // the base provides the nonroot user, CA certificates and /tmp; scripts/image recreates exactly that base
    assert!(one(&stage, "FROM").starts_with("gcr.io/distroless/static"), "{stage:?}");
    assert!(one(&stage, "FROM").ends_with(":nonroot"), "{stage:?}");

    let work = tempfile::tempdir().unwrap();
    let (config, listing, rootfs) = build_image(work.path());
    let c = &config["config"];
    assert_eq!(config["os"], "linux");
    assert_eq!(c["User"], one(&stage, "USER"));
    let entrypoint: Value = serde_json::from_str(one(&stage, "ENTRYPOINT")).expect("ENTRYPOINT is JSON");
    assert_eq!(c["Entrypoint"], entrypoint);
    let cmd: Value = serde_json::from_str(one(&stage, "CMD")).expect("CMD is JSON");
    assert_eq!(c["Cmd"], cmd);
    let exposed: Vec<String> = one(&stage, "EXPOSE").split_whitespace().map(|p| format!("{p}/tcp")).collect();
    let ports: Vec<String> = c["ExposedPorts"].as_object().expect("ExposedPorts").keys().cloned().collect();
    assert_eq!(ports, exposed);
    for (k, v) in labels(one(&stage, "LABEL")) {
        assert_eq!(c["Labels"][&k], v.as_str(), "label {k}");
    }

    // every COPY of the final stage lands in the image, executable, owned by root
    for (_, args) in stage.iter().filter(|(i, _)| i == "COPY") {
        let dest = args.split_whitespace().last().unwrap();
        let line = entry(&listing, dest.trim_start_matches('/'));
        assert!(line.starts_with("-rwxr-xr-x 0/0 "), "{line}");
    }
    // the distroless nonroot base: the USER's uid has a passwd entry with an existing, owned home; CA roots; /tmp
    let uid = one(&stage, "USER").split(':').next().unwrap().to_string();
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    let user = passwd.lines().find(|l| l.split(':').nth(2) == Some(uid.as_str())).expect("a passwd entry for USER");
    let home = user.split(':').nth(5).unwrap().trim_start_matches('/');
    assert!(entry(&listing, home).starts_with(&format!("drwx------ {uid}/{uid} ")), "{}", entry(&listing, home));
    let ca = std::fs::read_to_string(rootfs.join("etc/ssl/certs/ca-certificates.crt")).unwrap();
    assert!(ca.matches("BEGIN CERTIFICATE").count() > 50, "a CA bundle");
    assert!(entry(&listing, "tmp").starts_with("drwxrwxrwt 0/0 "), "{}", entry(&listing, "tmp"));
    assert!(std::fs::read_to_string(rootfs.join("etc/nsswitch.conf")).unwrap().contains("hosts: files dns"));
    // the image's user can read and traverse everything but its private home (a umask must not leak in)
    for line in listing.lines() {
        let mode = &line[..10];
        let ok = matches!(mode, "drwxr-xr-x" | "drwxrwxrwt" | "-rwxr-xr-x" | "-rw-r--r--" | "lrwxrwxrwx")
            || (mode == "drwx------" && line.ends_with("home/nonroot/"));
        assert!(ok, "unexpected mode: {line}");
    }
    // only the home belongs to the user: nothing else in the image is writable by it
    for line in listing.lines() {
        assert!(line.contains(" 0/0 ") || line.contains("home/nonroot"), "not root-owned: {line}");
    }

    // runnable: each library the binary needs (ldd on the image's copy) is in the image at the same path
    let bin = rootfs.join("smtp-operator");
    let ldd = Command::new("ldd").arg(&bin).output().expect("run ldd");
    let ldd = String::from_utf8_lossy(&ldd.stdout);
    let mut needed = 0;
    for line in ldd.lines() {
        let path = match line.split_whitespace().collect::<Vec<_>>()[..] {
            [_, "=>", p, ..] if p.starts_with('/') => p,
            [p, ..] if p.starts_with('/') => p,
            _ => continue,
        };
        needed += 1;
        assert!(rootfs.join(path.trim_start_matches('/')).is_file(), "{path} (needed by the binary) is missing");
    }
    assert!(needed >= 2, "a glibc binary needs libc and the loader: {ldd}");
}
