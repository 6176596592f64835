//! The project's root and its venv's Python, for the tests that compare with a PyTorch,
//! diffusers or transformers reference (`crates/*/tests` include this file by path; the
//! end-to-end tests through `common`).

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// The repository's root (`CARGO_MANIFEST_DIR` is `crates/<name>`).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `$PLANDIFF_PYTHON`, else the venv's python, which must exist (`make test` makes it).
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("PLANDIFF_PYTHON") {
        return p.into();
    }
    let p = root().join(".venv/bin/python");
    assert!(p.exists(), "{} is missing: run `make test` (it creates the venv) or set PLANDIFF_PYTHON", p.display());
    p
}

/// The venv's python when it can import `module`; else `None` (the caller skips, saying so),
/// unless `$require` is set, which makes a missing module a failure.
pub fn python_with(module: &str, require: &str) -> Option<PathBuf> {
    let py = root().join(".venv/bin/python");
    let ok = py.exists()
        && Command::new(&py).args(["-c", &format!("import {module}")]).output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(std::env::var_os(require).is_none(), "{module} is missing from .venv: run `make venv`");
        eprintln!("skipped: .venv lacks {module} (run `make venv`)");
        return None;
    }
    Some(py)
}
