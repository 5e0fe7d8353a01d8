//! Embeds an rpath to libtorch so binaries and test executables run without LD_LIBRARY_PATH,
//! and force-links libtorch_cuda so CUDA is found on GPU machines (rustc links --as-needed,
//! which would otherwise drop it because nothing references its symbols directly).
//! Also compiles the ATen shim `src/engine/ops/ops.cpp` against the same libtorch.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=TCH_NO_CUDA_LINK");
    // torch-sys declares `links = "tch"`, so a direct dependent sees DEP_TCH_LIBTORCH_LIB.
    let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        println!("cargo:warning=DEP_TCH_LIBTORCH_LIB not set: binaries will need LD_LIBRARY_PATH");
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    compile_ops(std::path::Path::new(&dir));
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
