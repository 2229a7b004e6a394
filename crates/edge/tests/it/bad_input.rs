//! Bad input at the edge: refused with a clear error, never forwarded.

use crate::harness::*;
use domicile_edge::extract::frame;
use domicile_proto::v1 as pb;
use prost::Message;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_oversized_bodies_are_refused_at_the_edge() {
    let fed = Fed::start().await;
    let before = fed.census().await;
    let addr = fed.edge_addr();
    let login = "/domicile.v1.Identity/Login";
    let register = "/domicile.v1.Identity/Register";
    // (path, body, grpc-status)
    let cases: Vec<(&str, Vec<u8>, Code)> = vec![
        (login, b"\x00\x00".to_vec(), Code::InvalidArgument),
        (login, vec![0, 0, 0, 0, 9, 1, 2], Code::InvalidArgument),
        (
            login,
            frame(&[0xff, 0xff, 0xff, 0x0f]),
            Code::InvalidArgument,
        ),
        (register, vec![1, 0, 0, 0, 1, 0], Code::Unimplemented),
        (
            register,
            frame(&vec![b'x'; 70 * 1024]),
            Code::ResourceExhausted,
        ),
        (register, vec![0; 1 << 20], Code::ResourceExhausted),
    ];
    for (path, body, status) in cases {
        let len = body.len();
        let (http_status, headers, _) = h2_post(addr, path, "application/grpc", body).await;
        assert_eq!(
            (http_status, grpc_status(&headers)),
            (200, Some((status as i32).to_string())),
            "{path} {len} bytes: {headers:?}"
        );
    }
    // A well-formed message with a 1 MiB password is over the limit too.
    let huge = pb::RegisterRequest {
        email: "a@example.org".into(),
        password: "p".repeat(1 << 20),
        ..Default::default()
    };
    let s = expect_code(
        fed.client().await.register(huge).await,
        Code::ResourceExhausted,
    );
    assert!(s.message().contains("over"), "{s:?}");
    assert_eq!(fed.census().await, before, "nothing reached a store");
    // The nodes are fine.
    fed.client()
        .await
        .register(from("192.0.2.1", register_req()))
        .await
        .unwrap();
}

fn register_req() -> pb::RegisterRequest {
    register("after@example.org")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_content_types_and_internal_services_are_refused() {
    let fed = Fed::start().await;
    let addr = fed.edge_addr();
    let body = frame(
        &pb::LoginRequest {
            email: "a@example.org".into(),
            password: "x".into(),
        }
        .encode_to_vec(),
    );
    let (status, _, _) = h2_post(
        addr,
        "/domicile.v1.Identity/Login",
        "application/json",
        body.clone(),
    )
    .await;
    assert_eq!(status, 415);
    // The index is internal: never on the public hostname.
    let lookup = frame(&pb::IndexLookupRequest { key: vec![0; 32] }.encode_to_vec());
    let (status, headers, _) = h2_post(
        addr,
        "/domicile.v1.HomeIndex/Lookup",
        "application/grpc",
        lookup,
    )
    .await;
    assert_eq!(
        (status, grpc_status(&headers)),
        (200, Some((Code::Unimplemented as i32).to_string())),
        "{headers:?}"
    );
    let (status, _) = http_get(addr, "/anything-else").await;
    assert_eq!(status, 404);
    // Invalid input inside a valid frame is the node's to judge, with its message.
    let bad = pb::RegisterRequest {
        email: "not-an-email".into(),
        password: "long enough".into(),
        ..Default::default()
    };
    let s = expect_code(
        fed.client().await.register(from("192.0.2.1", bad)).await,
        Code::InvalidArgument,
    );
    assert!(s.message().starts_with("email:"), "{s:?}");
}
