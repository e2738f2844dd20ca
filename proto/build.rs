//! Compiles `barrage/v1/*.proto` with the vendored protoc, so a fresh machine needs
//! nothing but the Rust toolchain.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    // Histograms are most of a report's bytes: as `Bytes` they are slices of the
    // received buffer, not a copy and an allocation each (the master decodes
    // thousands per second).
    config.bytes([".barrage.v1.Histogram.hdr_v2"]);
    println!("cargo:rerun-if-changed=barrage/v1/cluster.proto");
    tonic_prost_build::configure().compile_with_config(config, &["barrage/v1/cluster.proto"], &["."])?;
    Ok(())
}
