//! Records the target triple so plugins can tell the host what they were compiled for.

fn main() {
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".to_owned());
    println!("cargo:rustc-env=RAGGED_BUILD_TARGET={target}");
}
