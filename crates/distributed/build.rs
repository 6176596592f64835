//! Compiles `shim/dist.cpp` against the headers of the libtorch torch-sys links
//! (`DEP_TCH_LIBTORCH_LIB/../include`), with torch's C++17 and CXX11 ABI.
//!
//! Gloo: the PyPI wheel has c10d's headers and exports `ProcessGroupGloo` but lacks gloo's own
//! headers; Debian's `libgloo-dev` has them (`/usr/include/gloo`, or `PLANDIFF_GLOO_INCLUDE`).
//! NCCL: needs a CUDA libtorch (`libtorch_cuda.so`) and the headers of the PyPI packages
//! `nvidia-nccl-cu13`, `nvidia-cuda-runtime`, `nvidia-cuda-crt`, `nvidia-cuda-cccl` beside
//! torch in site-packages. Whatever is missing turns that backend off (cfg `plandiff_gloo`,
//! `plandiff_nccl`); the crate always builds, and `plandiff train` says what is missing.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo::rustc-check-cfg=cfg(plandiff_gloo)");
    println!("cargo::rustc-check-cfg=cfg(plandiff_nccl)");
    println!("cargo:rerun-if-changed=shim/dist.cpp");
    println!("cargo:rerun-if-changed=shim/ops.cpp");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=PLANDIFF_GLOO_INCLUDE");
    println!("cargo:rerun-if-env-changed=PLANDIFF_NO_NCCL");
    // Rebuilt when gloo's headers appear (`make build` installs them).
    let gloo_dir = Path::new("/usr/include/gloo");
    println!("cargo:rerun-if-changed={}", if gloo_dir.exists() { "/usr/include/gloo" } else { "/usr/include" });
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        println!("cargo:warning=torch-sys did not report its libtorch; c10d is off");
        return;
    };
    let lib = PathBuf::from(lib);
    // As build/torch_rpath.rs: this crate's tests run without LD_LIBRARY_PATH.
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
    let include = lib.join("..").join("include");
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .file("shim/dist.cpp")
        .file("shim/ops.cpp")
        .include(&include)
        .include(include.join("torch").join("csrc").join("api").join("include"))
        .flag("-std=c++17")
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .warnings(false)
        .flag_if_supported("-w");
    let gloo = gloo_include();
    if let Some(dir) = &gloo {
        if dir != Path::new("/usr/include") {
            build.include(dir);
        }
        build.define("USE_C10D_GLOO", None).define("PLANDIFF_GLOO", None);
        println!("cargo:rustc-cfg=plandiff_gloo");
    } else {
        println!("cargo:warning=gloo headers not found (apt install libgloo-dev); multi-process CPU training is off");
    }
    if let Some(dirs) = nccl_includes(&lib) {
        for d in dirs {
            build.include(d);
        }
        build.define("USE_C10D_NCCL", None).define("USE_CUDA", None).define("PLANDIFF_NCCL", None);
        println!("cargo:rustc-cfg=plandiff_nccl");
        // c10::cuda::set_device lives in libc10_cuda.so (beside libtorch_cuda.so).
        println!("cargo:rustc-link-search=native={}", lib.display());
        println!("cargo:rustc-link-lib=dylib=c10_cuda");
    }
    build.compile("plandiff_dist_shim");
}

fn gloo_include() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("PLANDIFF_GLOO_INCLUDE") {
        return Some(PathBuf::from(dir)).filter(|d| d.join("gloo").join("config.h").exists());
    }
    let usr = PathBuf::from("/usr/include");
    usr.join("gloo").join("config.h").exists().then_some(usr)
}

/// NCCL's and CUDA's header folders from site-packages/nvidia, if all are there.
fn nccl_includes(lib: &Path) -> Option<Vec<PathBuf>> {
    if std::env::var_os("PLANDIFF_NO_NCCL").is_some() || !lib.join("libtorch_cuda.so").exists() {
        return None;
    }
    // lib = site-packages/torch/lib
    let nvidia = lib.join("..").join("..").join("nvidia");
    println!("cargo:rerun-if-changed={}", nvidia.join("cu13").join("include").display());
    let nccl = nvidia.join("nccl").join("include");
    let cu = nvidia.join("cu13").join("include");
    let needed = [
        nccl.join("nccl.h"),
        cu.join("cuda_runtime_api.h"),
        cu.join("crt").join("host_defines.h"),
        cu.join("cccl").join("cuda").join("std").join("version"),
    ];
    if let Some(missing) = needed.iter().find(|p| !p.exists()) {
        println!(
            "cargo:warning=NCCL is off: {} is missing (pip install nvidia-nccl-cu13 nvidia-cuda-runtime nvidia-cuda-crt==13.0.* nvidia-cuda-cccl==13.0.*)",
            missing.display()
        );
        return None;
    }
    Some(vec![nccl, cu.clone(), cu.join("cccl")])
}
