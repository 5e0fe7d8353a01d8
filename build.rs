//! Embeds an rpath to libtorch so binaries and test executables run without LD_LIBRARY_PATH,
//! and force-links libtorch_cuda so CUDA is found on GPU machines (rustc links --as-needed,
//! which would otherwise drop it because nothing references its symbols directly).
//! Also compiles the ATen shim `src/engine/ops/ops.cpp` against the same libtorch, and embeds
//! every preset of `presets/` in the binary (`core::preset::shipped`).
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    embed_presets();
    println!("cargo:rerun-if-env-changed=TCH_NO_CUDA_LINK");
    // torch-sys declares `links = "tch"`, so a direct dependent sees DEP_TCH_LIBTORCH_LIB.
    let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        println!("cargo:warning=DEP_TCH_LIBTORCH_LIB not set: binaries will need LD_LIBRARY_PATH");
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    compile_ops(std::path::Path::new(&dir));
    compile_dist(std::path::Path::new(&dir));
    if std::env::var_os("TCH_NO_CUDA_LINK").is_none()
        && std::path::Path::new(&dir).join("libtorch_cuda.so").exists()
    {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
    // The git commit recorded in every run's preset.ron.
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=WORKBENCH_GIT_COMMIT={commit}");
    println!("cargo:rerun-if-changed=.git/HEAD");
}

/// Builds the C++ shim with the flags torch-sys uses for its own wrapper.
fn compile_ops(lib_dir: &std::path::Path) {
    const SRC: &str = "src/engine/ops/ops.cpp";
    println!("cargo:rerun-if-changed={SRC}");
    // The error convention both shims include.
    println!("cargo:rerun-if-changed=src/engine/shim_error.hpp");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let include = lib_dir
        .parent()
        .map(|p| p.join("include"))
        .unwrap_or_default();
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_string());
    cc::Build::new()
        .cpp(true)
        .file(SRC)
        .include(&include)
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .warnings(false)
        .compile("workbench_ops");
}

/// Builds the c10d shim `src/engine/dist/dist.cpp` (TCP store, Gloo process group) against
/// the same libtorch. torch's `ProcessGroupGloo.hpp` includes Gloo's own headers, which the
/// wheel does not ship: they come from Debian's `libgloo-dev` (headers only; setup installs it).
fn compile_dist(lib_dir: &std::path::Path) {
    const SRC: &str = "src/engine/dist/dist.cpp";
    println!("cargo:rerun-if-changed={SRC}");
    let include = lib_dir
        .parent()
        .map(|p| p.join("include"))
        .unwrap_or_default();
    let gloo = std::path::Path::new("/usr/include/gloo/algorithm.h");
    if !gloo.exists() {
        println!(
            "cargo:warning=Gloo headers missing ({}): scripts/setup.sh installs libgloo-dev",
            gloo.display()
        );
    }
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_string());
    let nccl = nccl_headers(lib_dir);
    println!("cargo:rustc-check-cfg=cfg(workbench_nccl)");
    let mut build = cc::Build::new();
    if nccl.is_some() {
        println!("cargo:rustc-cfg=workbench_nccl");
        build.define("WB_HAVE_NCCL", "1");
    }
    build
        .cpp(true)
        .file(SRC)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .flag("-DUSE_C10D_GLOO")
        .warnings(false)
        .compile("workbench_dist");
    // After the Gloo shim, which calls into it: static archives link in this order.
    if let Some(headers) = nccl {
        compile_nccl(&include, &headers, &abi);
    }
}

/// The include folders of NCCL and of the CUDA runtime when this libtorch has CUDA and the
/// headers torch's `ProcessGroupNCCL.hpp` needs are present: `nccl.h` from the wheel's
/// `nvidia-nccl`, the CUDA runtime's with their `crt/` part (`nvidia-cuda-crt`) and CCCL's `nv/`
/// (`nvidia-cuda-cccl`), which setup installs beside torch.
fn nccl_headers(lib_dir: &std::path::Path) -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    println!("cargo:rerun-if-env-changed=WORKBENCH_NO_NCCL");
    if std::env::var_os("WORKBENCH_NO_NCCL").is_some() || !lib_dir.join("libtorch_cuda.so").exists()
    {
        return None;
    }
    // site-packages/torch/lib -> site-packages/nvidia
    let nvidia = lib_dir.parent()?.parent()?.join("nvidia");
    let nccl = nvidia.join("nccl/include");
    let cuda = std::fs::read_dir(&nvidia).ok().and_then(|d| {
        d.filter_map(|e| e.ok().map(|e| e.path().join("include")))
            .find(|p| p.join("crt/host_config.h").is_file() && p.join("cuda_runtime.h").is_file())
    });
    match cuda {
        Some(cuda) if nccl.join("nccl.h").is_file() => Some((nccl, cuda)),
        _ => {
            println!("cargo:warning=no NCCL backend: the CUDA runtime's crt/ headers are missing (scripts/setup.sh installs nvidia-cuda-crt and nvidia-cuda-cccl)");
            None
        }
    }
}

/// Builds `src/engine/dist/nccl.cpp`: c10d's NCCL process group (its symbols come from
/// `libtorch_cuda.so`).
fn compile_nccl(
    include: &std::path::Path,
    (nccl, cuda): &(std::path::PathBuf, std::path::PathBuf),
    abi: &str,
) {
    const SRC: &str = "src/engine/dist/nccl.cpp";
    println!("cargo:rerun-if-changed={SRC}");
    cc::Build::new()
        .cpp(true)
        .file(SRC)
        .include(include)
        .include(include.join("torch/csrc/api/include"))
        .include(nccl)
        .include(cuda)
        .include(cuda.join("cccl"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .flag("-DUSE_C10D_NCCL")
        .flag("-DUSE_CUDA")
        .warnings(false)
        .compile("workbench_dist_nccl");
}

/// Writes `$OUT_DIR/shipped_presets.rs`: every `presets/*.ron` as `(file stem, text)`, sorted,
/// so the app lists the shipped presets wherever it starts and a new file ships by itself.
fn embed_presets() {
    println!("cargo:rerun-if-changed=presets");
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir("presets")
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "ron"));
    files.sort();
    let mut out = String::from("pub static SHIPPED: &[(&str, &str)] = &[\n");
    for f in &files {
        let stem = f.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        // Relative to the crate at the include site, not an absolute path: a checkout
        // elsewhere that shares the target folder (a CI clone) may reuse this output.
        out.push_str(&format!(
            "    ({stem:?}, include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/presets/{stem}.ron\"))),\n"
        ));
    }
    out.push_str("];\n");
    let dir = std::env::var("OUT_DIR").unwrap_or_else(|_| ".".to_string());
    let path = std::path::Path::new(&dir).join("shipped_presets.rs");
    if let Err(e) = std::fs::write(&path, out) {
        println!("cargo:warning=cannot write {}: {e}", path.display());
    }
}
