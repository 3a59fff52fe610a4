fn main() -> Result<(), Box<dyn std::error::Error>> {
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(
            &[
                "proto/etcd/kv.proto",
                "proto/etcd/rpc.proto",
                "proto/peer.proto",
            ],
            &["proto"],
        )?;
    Ok(())
}
