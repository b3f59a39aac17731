//! Compiles `proto/station/v1/*.proto` with protox (pure Rust, no system protoc)
//! into prost messages and tonic service stubs, and writes the encoded
//! `FileDescriptorSet` next to them for the proto3 JSON mapping.

use std::path::PathBuf;

use prost::Message as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let files = [
        "station/v1/event.proto",
        "station/v1/sync.proto",
        "station/v1/query.proto",
    ];
    let fds = protox::compile(files, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("station_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(false)
        .codec_path("crate::codec::StrictCodec")
        .compile_fds(fds)?;
    Ok(())
}
