//! Compiles `barrage/v1/*.proto` with the vendored protoc, so a fresh machine needs
//! nothing but the Rust toolchain.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    println!("cargo:rerun-if-changed=barrage/v1/cluster.proto");
    tonic_prost_build::configure().compile_with_config(config, &["barrage/v1/cluster.proto"], &["."])?;
    Ok(())
}
