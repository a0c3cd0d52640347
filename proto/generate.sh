#!/bin/sh
# Regenerate chatd's protobuf modules from proto/*.proto.
#
#     sh proto/generate.sh [OUTPUT_DIR]
#
# Needs grpcio-tools, pinned in setup.py's test extra (pip install -e
# '.[test]'); its bundled protoc makes the output independent of any system
# protoc. OUTPUT_DIR defaults to
# chatd/protocol; tests/test_proto_generated.py generates into a temporary
# directory and compares, so a stale module fails the tests.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-"$here/../chatd/protocol"}
mkdir -p "$out"
cd "$here"
exec "${PYTHON:-python3}" -m grpc_tools.protoc --proto_path=. --python_out="$out" message.proto
