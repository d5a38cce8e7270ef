"""The test servers start on 127.0.0.1, answer, and leave nothing behind when stopped."""

from __future__ import annotations

import socket

from servers import PostgresServer, S3Server


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_postgres_starts_with_password_auth_and_stops():
    server = PostgresServer().start()
    try:
        root, port = server.root, server.port
        assert server.query("select current_user, inet_server_addr()::text") == [("medallion", "127.0.0.1/32")]
        assert listening(port)
    finally:
        server.stop()
    assert not listening(port)
    assert not root.exists()


def test_s3_server_serves_buckets_and_stops():
    server = S3Server().start()
    try:
        root, port = server.root, server.port
        bucket = server.bucket()
        server.client().put_object(Bucket=bucket, Key="a/b.txt", Body=b"hello")
        assert server.client().get_object(Bucket=bucket, Key="a/b.txt")["Body"].read() == b"hello"
    finally:
        server.stop()
    assert not listening(port)
    assert not root.exists()
