"""In-memory TLS 1.3 handshakes between our client and our server."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from test_tls_support import (
    CLIENT_TP,
    SERVER_TP,
    Pair,
    assert_keys_match,
    ca,
    client_cert,
    client_settings,
    drive,
    feed_bytewise,
    make_pair,
    other_ca,
    server_settings,
    take,
)

from ghostwire.quic.errors import QuicProtocolError, TransportErrorCode
from ghostwire.quic.suites import CipherSuite, Epoch
from ghostwire.quic.tls import (
    AlertDescription,
    CertificateVerificationError,
    Group,
    SignatureScheme,
    TlsAlert,
    TlsHandshake,
    TlsSettings,
    TrustStore,
)
from ghostwire.quic.tls import server as tls_server
from ghostwire.quic.tls.extensions import (
    ExtensionType,
    decode_client_key_shares,
    decode_supported_groups,
    encode_alpn,
    encode_client_key_shares,
    encode_hrr_key_share,
    encode_supported_groups,
)
from ghostwire.quic.tls.messages import (
    HRR_RANDOM,
    ClientHello,
    EncryptedExtensions,
    HandshakeType,
    NewSessionTicket,
    ServerHello,
)

A = AlertDescription
KEY_TYPES = {
    "ec": SignatureScheme.ECDSA_SECP256R1_SHA256,
    "rsa": SignatureScheme.RSA_PSS_RSAE_SHA256,
    "ed25519": SignatureScheme.ED25519,
}


def split(data: bytes) -> list[bytes]:
    """Handshake messages in ``data``."""
    messages = []
    while data:
        end = 4 + int.from_bytes(data[1:4], "big")
        messages.append(data[:end])
        data = data[end:]
    return messages


def alert_of(exc_info: pytest.ExceptionInfo[TlsAlert]) -> int:
    return exc_info.value.alert


# -- full handshakes ---------------------------------------------------------


@pytest.mark.parametrize("suite", list(CipherSuite))
@pytest.mark.parametrize("group", [Group.X25519, Group.SECP256R1, Group.SECP384R1])
@pytest.mark.parametrize("key_type", list(KEY_TYPES))
def test_handshake_matrix(suite: CipherSuite, group: Group, key_type: str) -> None:
    pair = make_pair(
        client_settings(cipher_suites=[suite], groups=[group]),
        server_settings(key_type, groups=list(Group)),
    )
    drive(pair)
    assert pair.client.complete and pair.server.complete
    assert_keys_match(pair)
    for hs in (pair.client, pair.server):
        assert hs.cipher_suite is suite
        assert hs.group is group
        assert hs.signature_scheme is KEY_TYPES[key_type]
        assert hs.alpn_protocol == "h3"
        assert not hs.hello_retry_request_sent and not hs.hello_retry_request_received
    assert all(len(k.secret) == suite.hash_length for k in pair.client_keys)
    assert pair.client.peer_certificates == server_settings(key_type).certificate_chain


def test_order_of_effects() -> None:
    pair = make_pair()
    client, server = pair.client, pair.server
    client.start()
    hello = take(client, Epoch.INITIAL)
    assert [m[0] for m in split(hello)] == [HandshakeType.CLIENT_HELLO]
    assert client.pop_key_changes() == []

    server.receive(Epoch.INITIAL, hello)
    assert [m[0] for m in split(take(server, Epoch.INITIAL))] == [HandshakeType.SERVER_HELLO]
    flight = take(server, Epoch.HANDSHAKE)
    assert [m[0] for m in split(flight)] == [
        HandshakeType.ENCRYPTED_EXTENSIONS,
        HandshakeType.CERTIFICATE,
        HandshakeType.CERTIFICATE_VERIFY,
        HandshakeType.FINISHED,
    ]
    assert [(k.epoch, k.is_write) for k in server.pop_key_changes()] == [
        (Epoch.HANDSHAKE, True),
        (Epoch.HANDSHAKE, False),
        (Epoch.ONE_RTT, True),
    ]
    assert not server.complete
    assert server.peer_transport_parameters == CLIENT_TP


def test_client_effects_step_by_step() -> None:
    pair = make_pair()
    client, server = pair.client, pair.server
    client.start()
    server.receive(Epoch.INITIAL, take(client, Epoch.INITIAL))
    server_keys = server.pop_key_changes()

    client.receive(Epoch.INITIAL, take(server, Epoch.INITIAL))
    assert [(k.epoch, k.is_write) for k in client.pop_key_changes()] == [
        (Epoch.HANDSHAKE, False),
        (Epoch.HANDSHAKE, True),
    ]
    before = client.peer_transport_parameters
    assert before is None
    client.receive(Epoch.HANDSHAKE, take(server, Epoch.HANDSHAKE))
    changes = client.pop_key_changes()
    assert [(k.epoch, k.is_write) for k in changes] == [
        (Epoch.ONE_RTT, True),
        (Epoch.ONE_RTT, False),
    ]
    assert client.complete
    assert client.peer_transport_parameters == SERVER_TP
    assert [m[0] for m in split(take(client, Epoch.HANDSHAKE))] == [HandshakeType.FINISHED]
    # The server's 1-RTT write secret is the client's 1-RTT read secret.
    assert changes[1].secret == server_keys[2].secret


def test_server_completes_on_client_finished() -> None:
    pair = make_pair()
    pair.client.start()
    pair.server.receive(Epoch.INITIAL, take(pair.client, Epoch.INITIAL))
    pair.client.receive(Epoch.INITIAL, take(pair.server, Epoch.INITIAL))
    pair.client.receive(Epoch.HANDSHAKE, take(pair.server, Epoch.HANDSHAKE))
    pair.server.pop_key_changes()
    pair.server.receive(Epoch.HANDSHAKE, take(pair.client, Epoch.HANDSHAKE))
    assert pair.server.complete
    assert [(k.epoch, k.is_write) for k in pair.server.pop_key_changes()] == [
        (Epoch.ONE_RTT, False)
    ]


def test_one_byte_at_a_time() -> None:
    pair = drive(make_pair(), feed=feed_bytewise)
    assert pair.client.complete and pair.server.complete
    assert_keys_match(pair)


def test_transport_parameters_both_ways() -> None:
    pair = drive(make_pair())
    assert pair.client.peer_transport_parameters == SERVER_TP
    assert pair.server.peer_transport_parameters == CLIENT_TP


def test_keylog_lines_match_secrets() -> None:
    client_lines: list[str] = []
    server_lines: list[str] = []
    pair = drive(
        make_pair(
            client_settings(keylog=client_lines.append),
            server_settings(keylog=server_lines.append),
        )
    )
    assert sorted(client_lines) == sorted(server_lines)
    labels = [line.split()[0] for line in client_lines]
    assert sorted(labels) == sorted(
        [
            "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
            "SERVER_HANDSHAKE_TRAFFIC_SECRET",
            "CLIENT_TRAFFIC_SECRET_0",
            "SERVER_TRAFFIC_SECRET_0",
        ]
    )
    secrets = {k.secret.hex() for k in pair.client_keys}
    assert {line.split()[2] for line in client_lines} == secrets
    randoms = {line.split()[1] for line in client_lines}
    assert len(randoms) == 1 and len(randoms.pop()) == 64


# -- HelloRetryRequest -------------------------------------------------------


@pytest.mark.parametrize(
    ("client_groups", "server_groups"),
    [
        ([Group.X25519, Group.SECP256R1], [Group.SECP256R1]),
        ([Group.SECP256R1, Group.X25519], [Group.X25519]),
    ],
)
def test_hello_retry_request(client_groups: list[Group], server_groups: list[Group]) -> None:
    pair = drive(
        make_pair(client_settings(groups=client_groups), server_settings(groups=server_groups))
    )
    assert pair.client.complete and pair.server.complete
    assert pair.server.hello_retry_request_sent and pair.client.hello_retry_request_received
    assert pair.client.group is pair.server.group is server_groups[0]
    assert_keys_match(pair)


def test_hello_retry_request_bytewise() -> None:
    pair = make_pair(client_settings(), server_settings(groups=[Group.SECP384R1, Group.X25519]))
    # The client's first share (X25519) is acceptable: no HRR.
    drive(pair, feed=feed_bytewise)
    assert pair.server.group is Group.X25519 and not pair.server.hello_retry_request_sent
    pair = drive(
        make_pair(
            client_settings(groups=[Group.X25519, Group.SECP384R1]),
            server_settings(groups=[Group.SECP384R1]),
        ),
        feed=feed_bytewise,
    )
    assert pair.client.complete and pair.server.hello_retry_request_sent
    assert_keys_match(pair)


def _hrr(group: int, suite: int = CipherSuite.AES_128_GCM_SHA256) -> bytes:
    return ServerHello(
        HRR_RANDOM,
        suite,
        {
            ExtensionType.SUPPORTED_VERSIONS: b"\x03\x04",
            ExtensionType.KEY_SHARE: encode_hrr_key_share(group),
        },
    ).encode()


def test_second_hello_retry_request_is_unexpected() -> None:
    client = TlsHandshake(client_settings(groups=[Group.X25519, Group.SECP256R1]), CLIENT_TP)
    client.start()
    client.receive(Epoch.INITIAL, _hrr(Group.SECP256R1))
    assert client.hello_retry_request_received
    hello2 = ClientHello.parse(split(take(client, Epoch.INITIAL))[1])
    assert hello2.extensions[ExtensionType.KEY_SHARE][2:4] == b"\x00\x17"  # secp256r1
    with pytest.raises(TlsAlert) as exc_info:
        client.receive(Epoch.INITIAL, _hrr(Group.X25519))
    # RFC 8446 §4.1.4
    assert alert_of(exc_info) == A.UNEXPECTED_MESSAGE


@pytest.mark.parametrize("group", [Group.SECP384R1, Group.X25519, 0x1234])
def test_hello_retry_request_for_bad_group(group: int) -> None:
    # SECP384R1 was not offered; X25519 is the group already sent.
    client = TlsHandshake(client_settings(groups=[Group.X25519, Group.SECP256R1]), CLIENT_TP)
    client.start()
    with pytest.raises(TlsAlert) as exc_info:
        client.receive(Epoch.INITIAL, _hrr(group))
    assert alert_of(exc_info) == A.ILLEGAL_PARAMETER


def test_server_hello_suite_must_match_hrr() -> None:
    pair = make_pair(
        client_settings(groups=[Group.X25519, Group.SECP256R1]),
        server_settings(groups=[Group.SECP256R1]),
    )
    pair.client.start()
    take(pair.client, Epoch.INITIAL)
    pair.client.receive(Epoch.INITIAL, _hrr(Group.SECP256R1, CipherSuite.AES_256_GCM_SHA384))
    pair.server.receive(Epoch.INITIAL, take(pair.client, Epoch.INITIAL))
    # The server never saw the HRR; it picks AES-128 for ClientHello2.
    with pytest.raises(TlsAlert) as exc_info:
        pair.client.receive(Epoch.INITIAL, take(pair.server, Epoch.INITIAL))
    assert alert_of(exc_info) == A.ILLEGAL_PARAMETER


def test_second_client_hello_without_requested_share() -> None:
    server = TlsHandshake(server_settings(groups=[Group.SECP256R1]), SERVER_TP)
    client = TlsHandshake(client_settings(groups=[Group.X25519, Group.SECP256R1]), CLIENT_TP)
    client.start()
    first = take(client, Epoch.INITIAL)
    server.receive(Epoch.INITIAL, first)
    assert server.hello_retry_request_sent
    with pytest.raises(TlsAlert) as exc_info:
        server.receive(Epoch.INITIAL, first)  # the same X25519 share again
    assert alert_of(exc_info) == A.ILLEGAL_PARAMETER


# -- ALPN, SNI, transport parameters ----------------------------------------


def test_alpn_server_preference() -> None:
    pair = drive(
        make_pair(
            client_settings(alpn_protocols=["h3", "hq-interop", "x"]),
            server_settings(alpn_protocols=["hq-interop", "h3"]),
        )
    )
    assert pair.client.alpn_protocol == pair.server.alpn_protocol == "hq-interop"


def test_alpn_mismatch_is_no_application_protocol() -> None:
    pair = make_pair(client_settings(alpn_protocols=["h3"]), server_settings(alpn_protocols=["x"]))
    with pytest.raises(TlsAlert) as exc_info:
        drive(pair)
    assert exc_info.value.alert == A.NO_APPLICATION_PROTOCOL
    assert exc_info.value.error_code == 0x178
    assert exc_info.value.alert_name == "no_application_protocol"
    assert "x" in exc_info.value.reason


def _tampered_encrypted_extensions(extensions: dict[int, bytes]) -> TlsHandshake:
    """A client that has just received a ServerHello and is fed a custom EE."""
    pair = make_pair()
    pair.client.start()
    pair.server.receive(Epoch.INITIAL, take(pair.client, Epoch.INITIAL))
    pair.client.receive(Epoch.INITIAL, take(pair.server, Epoch.INITIAL))
    pair.client.receive(Epoch.HANDSHAKE, EncryptedExtensions(extensions).encode())
    return pair.client


@pytest.mark.parametrize(
    ("extensions", "alert"),
    [
        ({ExtensionType.QUIC_TRANSPORT_PARAMETERS: b"tp"}, A.NO_APPLICATION_PROTOCOL),
        (
            {
                ExtensionType.ALPN: encode_alpn([b"h2"]),
                ExtensionType.QUIC_TRANSPORT_PARAMETERS: b"",
            },
            A.NO_APPLICATION_PROTOCOL,
        ),
        (
            {
                ExtensionType.ALPN: encode_alpn([b"h3", b"h3"]),
                ExtensionType.QUIC_TRANSPORT_PARAMETERS: b"",
            },
            A.NO_APPLICATION_PROTOCOL,
        ),
        ({ExtensionType.ALPN: encode_alpn([b"h3"])}, A.MISSING_EXTENSION),
        (
            {ExtensionType.ALPN: encode_alpn([b"h3"]), ExtensionType.KEY_SHARE: b"\x00\x1d"},
            A.ILLEGAL_PARAMETER,
        ),
        ({ExtensionType.ALPN: encode_alpn([b"h3"]), 0xFF01: b""}, A.UNSUPPORTED_EXTENSION),
    ],
)
def test_client_checks_encrypted_extensions(extensions: dict[int, bytes], alert: int) -> None:
    with pytest.raises(TlsAlert) as exc_info:
        _tampered_encrypted_extensions(extensions)
    assert exc_info.value.alert == alert


def _client_hello(
    drop: tuple[int, ...] = (), replace: Mapping[int, bytes] | None = None, **fields: object
) -> bytes:
    client = TlsHandshake(client_settings(), CLIENT_TP)
    client.start()
    hello = ClientHello.parse(take(client, Epoch.INITIAL))
    for ext_type in drop:
        del hello.extensions[ext_type]
    hello.extensions.update(replace or {})
    for name, value in fields.items():
        setattr(hello, name, value)
    return hello.encode()


def _server_alert(hello: bytes, **server_overrides: Any) -> TlsAlert:
    server = TlsHandshake(server_settings(**server_overrides), SERVER_TP)
    with pytest.raises(TlsAlert) as exc_info:
        server.receive(Epoch.INITIAL, hello)
    assert server.outgoing[Epoch.INITIAL] == b""  # nothing half-sent
    return exc_info.value


def test_missing_transport_parameters() -> None:
    alert = _server_alert(_client_hello(drop=(ExtensionType.QUIC_TRANSPORT_PARAMETERS,)))
    assert alert.alert == A.MISSING_EXTENSION and alert.error_code == 0x100 + 109


def test_no_tls13_is_protocol_version() -> None:
    replace: dict[int, bytes] = {ExtensionType.SUPPORTED_VERSIONS: b"\x04\x03\x03\x03\x02"}
    assert _server_alert(_client_hello(replace=replace)).alert == A.PROTOCOL_VERSION
    no_versions = _client_hello(drop=(ExtensionType.SUPPORTED_VERSIONS,))
    assert _server_alert(no_versions).alert == A.PROTOCOL_VERSION


@pytest.mark.parametrize(
    ("client", "server"),
    [
        ({"cipher_suites": [CipherSuite.AES_128_GCM_SHA256]}, {"cipher_suites": [0x1303]}),
        ({"groups": [Group.X25519]}, {"groups": [Group.SECP256R1]}),
        ({"signature_schemes": [SignatureScheme.ED25519]}, {}),
    ],
)
def test_nothing_in_common_is_handshake_failure(
    client: dict[str, Any], server: dict[str, Any]
) -> None:
    pair = make_pair(client_settings(**client), server_settings(**server))
    with pytest.raises(TlsAlert) as exc_info:
        drive(pair)
    assert exc_info.value.alert == A.HANDSHAKE_FAILURE


def test_sni_dns_name_reaches_server() -> None:
    pair = drive(make_pair())
    assert pair.server.server_name == "localhost"
    assert pair.client.server_name == "localhost"


@pytest.mark.parametrize("address", ["127.0.0.1", "::1"])
def test_ip_literal_not_sent_as_sni(address: str) -> None:
    pair = drive(make_pair(client_settings(server_name=address)))
    assert pair.client.complete
    assert pair.server.server_name is None
    client = TlsHandshake(client_settings(server_name=address), CLIENT_TP)
    client.start()
    hello = ClientHello.parse(take(client, Epoch.INITIAL))
    assert ExtensionType.SERVER_NAME not in hello.extensions
    assert ExtensionType.SERVER_NAME in ClientHello.parse(_client_hello()).extensions


def test_server_name_normalized() -> None:
    settings = client_settings(server_name="LocalHost.")
    assert settings.server_name == "localhost"
    pair = drive(make_pair(settings))
    assert pair.server.server_name == "localhost"


# -- mutual TLS --------------------------------------------------------------


@pytest.mark.parametrize("key_type", list(KEY_TYPES))
def test_client_certificate_requested_and_given(key_type: str) -> None:
    cert = client_cert(key_type)
    pair = drive(
        make_pair(
            client_settings(certificate_chain=cert.chain, private_key=cert.private_key),
            server_settings(request_client_certificate=True),
        )
    )
    assert pair.client.complete and pair.server.complete
    assert pair.server.peer_certificates == cert.chain
    assert_keys_match(pair)


def test_client_certificate_requested_not_given() -> None:
    pair = drive(make_pair(server=server_settings(request_client_certificate=True)))
    assert pair.client.complete and pair.server.complete
    assert pair.server.peer_certificates == []
    assert_keys_match(pair)


def test_client_certificate_required_not_given() -> None:
    pair = make_pair(server=server_settings(require_client_certificate=True))
    with pytest.raises(CertificateVerificationError) as exc_info:
        drive(pair)
    assert exc_info.value.alert == A.CERTIFICATE_REQUIRED
    assert exc_info.value.error_code == 0x100 + 116
    assert pair.client.complete and not pair.server.complete


def test_client_certificate_untrusted() -> None:
    stranger = other_ca().issue(["client.test"], client=True)
    pair = make_pair(
        client_settings(certificate_chain=stranger.chain, private_key=stranger.private_key),
        server_settings(require_client_certificate=True),
    )
    with pytest.raises(CertificateVerificationError) as exc_info:
        drive(pair)
    assert exc_info.value.alert == A.UNKNOWN_CA


def test_client_certificate_not_verified_when_verify_peer_off() -> None:
    stranger = other_ca().issue(["client.test"], client=True)
    pair = drive(
        make_pair(
            client_settings(certificate_chain=stranger.chain, private_key=stranger.private_key),
            server_settings(request_client_certificate=True, verify_peer=False),
        )
    )
    assert pair.server.complete and pair.server.peer_certificates == stranger.chain


def test_client_certificate_with_server_certificate_rejected() -> None:
    # A server certificate lacks the clientAuth EKU.
    cert = ca().issue(["client.test"])
    pair = make_pair(
        client_settings(certificate_chain=cert.chain, private_key=cert.private_key),
        server_settings(request_client_certificate=True),
    )
    with pytest.raises(CertificateVerificationError):
        drive(pair)


# -- tampering and ordering --------------------------------------------------


def _server_flight() -> tuple[Pair, list[bytes]]:
    pair = make_pair()
    pair.client.start()
    pair.server.receive(Epoch.INITIAL, take(pair.client, Epoch.INITIAL))
    pair.client.receive(Epoch.INITIAL, take(pair.server, Epoch.INITIAL))
    return pair, split(take(pair.server, Epoch.HANDSHAKE))


def _flip_last_byte(message: bytes) -> bytes:
    return message[:-1] + bytes([message[-1] ^ 1])


def test_bad_finished_is_decrypt_error() -> None:
    pair, (ee, cert, cv, fin) = _server_flight()
    with pytest.raises(TlsAlert) as exc_info:
        pair.client.receive(Epoch.HANDSHAKE, ee + cert + cv + _flip_last_byte(fin))
    assert exc_info.value.alert == A.DECRYPT_ERROR
    assert not pair.client.complete


def test_bad_certificate_verify_is_decrypt_error() -> None:
    pair, (ee, cert, cv, fin) = _server_flight()
    with pytest.raises(TlsAlert) as exc_info:
        pair.client.receive(Epoch.HANDSHAKE, ee + cert + _flip_last_byte(cv) + fin)
    assert exc_info.value.alert == A.DECRYPT_ERROR


def test_certificate_verify_with_unoffered_scheme() -> None:
    pair, (ee, cert, cv, _fin) = _server_flight()
    bad = cv[:4] + b"\x04\x01" + cv[6:]  # rsa_pkcs1_sha256: never in CertificateVerify
    with pytest.raises(TlsAlert) as exc_info:
        pair.client.receive(Epoch.HANDSHAKE, ee + cert + bad)
    assert exc_info.value.alert == A.ILLEGAL_PARAMETER


def test_bad_client_finished_is_decrypt_error() -> None:
    pair = make_pair()
    pair.client.start()
    pair.server.receive(Epoch.INITIAL, take(pair.client, Epoch.INITIAL))
    pair.client.receive(Epoch.INITIAL, take(pair.server, Epoch.INITIAL))
    pair.client.receive(Epoch.HANDSHAKE, take(pair.server, Epoch.HANDSHAKE))
    with pytest.raises(TlsAlert) as exc_info:
        pair.server.receive(Epoch.HANDSHAKE, _flip_last_byte(take(pair.client, Epoch.HANDSHAKE)))
    assert exc_info.value.alert == A.DECRYPT_ERROR
    assert not pair.server.complete


def test_out_of_order_is_unexpected_message() -> None:
    pair, (ee, cert, _cv, _fin) = _server_flight()
    with pytest.raises(TlsAlert) as exc_info:
        pair.client.receive(Epoch.HANDSHAKE, cert)
    assert exc_info.value.alert == A.UNEXPECTED_MESSAGE
    # The handshake stays failed.
    with pytest.raises(TlsAlert):
        pair.client.receive(Epoch.HANDSHAKE, ee)


def test_message_at_wrong_epoch_is_unexpected() -> None:
    pair = make_pair()
    pair.client.start()
    with pytest.raises(TlsAlert) as exc_info:
        pair.server.receive(Epoch.HANDSHAKE, take(pair.client, Epoch.INITIAL))
    assert exc_info.value.alert == A.UNEXPECTED_MESSAGE


def test_data_after_key_change_is_unexpected() -> None:
    pair = make_pair()
    pair.client.start()
    pair.server.receive(Epoch.INITIAL, take(pair.client, Epoch.INITIAL))
    with pytest.raises(TlsAlert) as exc_info:
        pair.client.receive(Epoch.INITIAL, take(pair.server, Epoch.INITIAL) + b"\x08")
    assert exc_info.value.alert == A.UNEXPECTED_MESSAGE


def test_old_epoch_data_after_key_change_is_unexpected() -> None:
    pair = make_pair()
    pair.client.start()
    pair.server.receive(Epoch.INITIAL, take(pair.client, Epoch.INITIAL))
    pair.client.receive(Epoch.INITIAL, take(pair.server, Epoch.INITIAL))
    with pytest.raises(TlsAlert) as exc_info:
        pair.client.receive(Epoch.INITIAL, b"\x02")
    assert exc_info.value.alert == A.UNEXPECTED_MESSAGE


def test_change_cipher_spec_is_unexpected() -> None:
    client = TlsHandshake(client_settings(), CLIENT_TP)
    client.start()
    with pytest.raises(TlsAlert) as exc_info:
        client.receive(Epoch.INITIAL, bytes.fromhex("140303000101"))
    assert exc_info.value.alert == A.UNEXPECTED_MESSAGE


def test_oversized_message_rejected_before_body() -> None:
    pair, (ee, *_rest) = _server_flight()
    pair.client.receive(Epoch.HANDSHAKE, ee)
    header = bytes([HandshakeType.CERTIFICATE]) + (100_000).to_bytes(3, "big")
    with pytest.raises(TlsAlert) as exc_info:
        pair.client.receive(Epoch.HANDSHAKE, header)
    assert exc_info.value.alert == A.ILLEGAL_PARAMETER
    assert "limit" in exc_info.value.reason


def test_malformed_server_hello_is_decode_error() -> None:
    client = TlsHandshake(client_settings(), CLIENT_TP)
    client.start()
    with pytest.raises(TlsAlert) as exc_info:
        client.receive(Epoch.INITIAL, b"\x02\x00\x00\x03\x03\x03\x00")
    assert exc_info.value.alert == A.DECODE_ERROR


def test_legacy_session_id_is_protocol_violation() -> None:
    server = TlsHandshake(server_settings(), SERVER_TP)
    with pytest.raises(QuicProtocolError) as exc_info:
        server.receive(Epoch.INITIAL, _client_hello(legacy_session_id=bytes(32)))
    # RFC 9001 §8.4
    assert exc_info.value.error_code == TransportErrorCode.PROTOCOL_VIOLATION


def test_compression_methods_must_be_null() -> None:
    alert = _server_alert(_client_hello(legacy_compression_methods=b"\x01\x00"))
    assert alert.alert == A.ILLEGAL_PARAMETER


def test_missing_key_share_is_missing_extension() -> None:
    alert = _server_alert(_client_hello(drop=(ExtensionType.KEY_SHARE,)))
    assert alert.alert == A.MISSING_EXTENSION


def test_invalid_key_share_is_illegal_parameter() -> None:
    share = b"\x00\x24\x00\x1d\x00\x20" + bytes(32)  # an all-zero X25519 point
    alert = _server_alert(_client_hello(replace={ExtensionType.KEY_SHARE: share}))
    assert alert.alert == A.ILLEGAL_PARAMETER


class _CountedGroup(int):
    """A group number that counts the equality tests made with it."""

    compared = 0

    def __eq__(self, other: object) -> bool:
        _CountedGroup.compared += 1
        return int(self) == other

    __hash__ = int.__hash__


def test_many_key_shares_and_groups_cost_no_lookup_per_pair(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One unauthenticated ClientHello may offer thousands of groups and of
    # key shares (RFC 8446 §4.2.7, §4.2.8: each share's group must be in
    # supported_groups): that check may not scan the group list per share.
    hello = ClientHello.parse(_client_hello())
    real_shares = decode_client_key_shares(hello.extensions[ExtensionType.KEY_SHARE])
    real_groups = decode_supported_groups(hello.extensions[ExtensionType.SUPPORTED_GROUPS])
    unknown = list(range(0x1000, 0x1000 + 2000))
    hello.extensions[ExtensionType.SUPPORTED_GROUPS] = encode_supported_groups(
        unknown + real_groups
    )
    hello.extensions[ExtensionType.KEY_SHARE] = encode_client_key_shares(
        [(group, b"\x01") for group in unknown[-500:]] + real_shares
    )

    def counted(data: bytes) -> list[int]:
        return [_CountedGroup(group) for group in decode_supported_groups(data)]

    monkeypatch.setattr(tls_server, "decode_supported_groups", counted)
    _CountedGroup.compared = 0
    server = TlsHandshake(server_settings(), SERVER_TP)
    server.receive(Epoch.INITIAL, hello.encode())
    assert server.outgoing[Epoch.INITIAL]  # the unknown groups were passed over
    assert _CountedGroup.compared < 4 * (500 + len(real_shares))  # was 877,251


def test_server_hello_with_unoffered_suite() -> None:
    pair = make_pair(client_settings(cipher_suites=[CipherSuite.AES_128_GCM_SHA256]))
    pair.client.start()
    pair.server.receive(Epoch.INITIAL, take(pair.client, Epoch.INITIAL))
    hello = ServerHello.parse(take(pair.server, Epoch.INITIAL))
    hello.cipher_suite = CipherSuite.CHACHA20_POLY1305_SHA256
    with pytest.raises(TlsAlert) as exc_info:
        pair.client.receive(Epoch.INITIAL, hello.encode())
    assert exc_info.value.alert == A.ILLEGAL_PARAMETER


# -- after the handshake -----------------------------------------------------


def test_new_session_ticket_accepted_after_completion() -> None:
    pair = drive(make_pair())
    ticket = NewSessionTicket(3600, 12345, b"n", b"ticket-bytes").encode()
    pair.client.receive(Epoch.ONE_RTT, ticket + ticket[:5])
    pair.client.receive(Epoch.ONE_RTT, ticket[5:])
    assert [t.ticket for t in pair.client.session_tickets] == [b"ticket-bytes"] * 2
    assert pair.client.pop_key_changes() == []


def test_key_update_is_unexpected() -> None:
    pair = drive(make_pair())
    with pytest.raises(TlsAlert) as exc_info:
        pair.client.receive(Epoch.ONE_RTT, b"\x18\x00\x00\x01\x00")
    assert exc_info.value.alert == A.UNEXPECTED_MESSAGE
    assert "KeyUpdate" in exc_info.value.reason


@pytest.mark.parametrize("side", ["client", "server"])
def test_other_post_handshake_messages_unexpected(side: str) -> None:
    pair = drive(make_pair())
    hs = pair.client if side == "client" else pair.server
    with pytest.raises(TlsAlert) as exc_info:
        hs.receive(Epoch.ONE_RTT, b"\x14\x00\x00\x20" + bytes(32))
    assert exc_info.value.alert == A.UNEXPECTED_MESSAGE
    if side == "server":
        ticket = NewSessionTicket(1, 2, b"", b"t").encode()
        fresh = drive(make_pair()).server
        with pytest.raises(TlsAlert):
            fresh.receive(Epoch.ONE_RTT, ticket)


def test_handshake_data_after_completion_unexpected() -> None:
    pair = drive(make_pair())
    with pytest.raises(TlsAlert) as exc_info:
        pair.client.receive(Epoch.HANDSHAKE, b"\x14")
    assert exc_info.value.alert == A.UNEXPECTED_MESSAGE


# -- settings ---------------------------------------------------------------


def test_settings_validation() -> None:
    cert = client_cert()
    other = client_cert("rsa")
    with pytest.raises(ValueError, match="alpn"):
        TlsSettings(is_client=True, alpn_protocols=[], server_name="x")
    with pytest.raises(TypeError):
        TlsSettings(is_client=True, alpn_protocols="h3", server_name="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="server needs"):
        TlsSettings(is_client=False, alpn_protocols=["h3"])
    with pytest.raises(ValueError, match="does not match"):
        TlsSettings(
            is_client=False,
            alpn_protocols=["h3"],
            certificate_chain=cert.chain,
            private_key=other.private_key,
        )
    with pytest.raises(ValueError, match="server_name"):
        TlsSettings(is_client=True, alpn_protocols=["h3"])
    with pytest.raises(ValueError):
        TlsSettings(is_client=True, alpn_protocols=["h3"], server_name="x", groups=[0x9999])  # type: ignore[list-item]
    assert TlsSettings(is_client=True, alpn_protocols=["h3"], verify_peer=False).sni is None
    settings = server_settings(require_client_certificate=True)
    assert settings.request_client_certificate


def test_start_twice_is_a_bug() -> None:
    client = TlsHandshake(client_settings(), CLIENT_TP)
    client.start()
    with pytest.raises(RuntimeError):
        client.start()


def test_untrusted_server_fails_unless_verify_off() -> None:
    store = TrustStore([other_ca().certificate])
    with pytest.raises(CertificateVerificationError) as exc_info:
        drive(make_pair(client_settings(trust_store=store)))
    assert exc_info.value.alert == A.UNKNOWN_CA
    pair = drive(make_pair(client_settings(trust_store=store, verify_peer=False)))
    assert pair.client.complete
