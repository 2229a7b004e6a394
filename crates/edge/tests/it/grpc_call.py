"""One unary call with grpcio (gRPC C-core), for the edge's integration tests.

    python3 grpc_call.py ADDRESS METHOD [--gzip] [--meta KEY=VALUE]... < MESSAGE

MESSAGE (stdin) is the serialized request message; grpcio frames it. Prints
one JSON object: the call's status code name, details, initial and trailing
metadata, grpcio's debug error string, and the response's length on success.
Exits 0 whenever the call completed (with any status); 2 on bad usage.
"""

import json
import sys

try:
    import grpc
except ImportError as e:  # the Rust test checks first; this is a fallback
    print(json.dumps({"error": f"grpcio is not installed: {e}"}))
    sys.exit(3)


def text(md):
    return [[k, v if isinstance(v, str) else v.hex()] for k, v in (md or ())]


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    address, method, rest = argv[0], argv[1], argv[2:]
    gzip = False
    metadata = []
    while rest:
        flag = rest.pop(0)
        if flag == "--gzip":
            gzip = True
        elif flag == "--meta" and rest:
            key, _, value = rest.pop(0).partition("=")
            metadata.append((key, value))
        else:
            print(f"unknown argument {flag}", file=sys.stderr)
            return 2
    message = sys.stdin.buffer.read()
    out = {"grpcio": grpc.__version__}
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(
            method, request_serializer=None, response_deserializer=None
        )
        try:
            response, info = call.with_call(
                message,
                timeout=10,
                metadata=metadata,
                compression=grpc.Compression.Gzip if gzip else None,
            )
            out.update(
                code=info.code().name,
                details=info.details() or "",
                initial_metadata=text(info.initial_metadata()),
                trailing_metadata=text(info.trailing_metadata()),
                response_bytes=len(response),
            )
        except grpc.RpcError as e:
            out.update(
                code=e.code().name,
                details=e.details() or "",
                initial_metadata=text(e.initial_metadata()),
                trailing_metadata=text(e.trailing_metadata()),
                debug=e.debug_error_string(),
            )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
