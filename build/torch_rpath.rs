//! Shared build script for every crate that links libtorch.
//!
//! torch-sys exports the libtorch directory it linked against as `DEP_TCH_LIBTORCH_LIB`.
//! We bake it into binaries and test executables as an rpath so `target/*/plandiff` and
//! `cargo test` run without `LD_LIBRARY_PATH`, and link `libtorch_cuda.so` with
//! `--no-as-needed`: with the linker's default `--as-needed` it would be dropped (nothing
//! references its symbols directly) and CUDA would never be available at run time.

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    if std::path::Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
