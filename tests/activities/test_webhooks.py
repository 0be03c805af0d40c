"""call_webhook against hostile receivers: a name that resolves to a public address when checked and to
an internal one when connected (DNS rebinding), a body that never ends, a server that drips its answer.

The network here is a test double: names resolve as the attacker's DNS says (the event loop's
``getaddrinfo``), the public address refuses at once (or, where a test says so, reaches a local server
standing in for a public receiver), and loopback reaches the local servers."""

from __future__ import annotations

import asyncio
import socket
import ssl

import pytest
from pydantic import ValidationError
from temporalio.exceptions import ApplicationError

from activities.contracts import WEBHOOK_REJECTED, WebhookRequest
from activities.webhooks import WebhookActivities, checked_target, sign, verify
from config.settings import Settings

PUBLIC = "93.184.216.34"  # a global address; the fake network below never lets it be reached


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(dev_mode=True, data_dir=tmp_path, webhook_timeout_seconds=1.0)


class _Receiver:
    """A local HTTP server standing in for an internal service (or a hostile receiver)."""

    def __init__(self, respond, tls: ssl.SSLContext | None = None):
        self.connections = 0
        self.heads: list[bytes] = []
        self._respond = respond
        self._tls = tls
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> _Receiver:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                self.heads.append(await reader.readuntil(b"\r\n\r\n"))
                await self._respond(writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        self.server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=self._tls)
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()

    @property
    def port(self) -> int:
        return self.server.sockets[0].getsockname()[1]


async def _ok(writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    await writer.drain()


class _Network(dict):
    """Names and the answers their DNS gives, one per lookup (the last one repeats)."""

    public_port: int | None = None  # where a connection to PUBLIC lands; None: it is refused


@pytest.fixture
async def network(monkeypatch) -> _Network:
    loop = asyncio.get_running_loop()
    real_resolve, real_connect = loop.getaddrinfo, loop.create_connection
    answers = _Network()

    async def getaddrinfo(host, port, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name in answers:
            script = answers[name]
            address = script.pop(0) if len(script) > 1 else script[0]
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            return [(family, socket.SOCK_STREAM, 6, "", (address, port or 0))]
        return await real_resolve(host, port, *args, **kwargs)

    async def create_connection(factory, host=None, port=None, *args, **kwargs):
        if host == PUBLIC:
            if answers.public_port is None or port != answers.public_port:
                raise ConnectionRefusedError(f"{PUBLIC} refuses (test network)")
            host = "127.0.0.1"
        return await real_connect(factory, host, port, *args, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(loop, "create_connection", create_connection)
    return answers


def _request(url: str) -> WebhookRequest:
    return WebhookRequest(idempotency_key="wf/1/hook/1", url=url, payload={"customer_id": 1})


async def test_a_name_that_rebinds_to_loopback_after_the_check_never_reaches_it(settings, network):
    async with _Receiver(_ok) as internal:
        # checked: public; asked again a moment later by the HTTP client: loopback
        network["rebind.attacker.example"] = [PUBLIC, "127.0.0.1"]
        with pytest.raises(Exception):  # noqa: B017 - the public address refuses: any failure will do
            await WebhookActivities(settings).call_webhook(
                _request(f"http://rebind.attacker.example:{internal.port}/admin")
            )
        assert internal.connections == 0


async def test_a_name_resolving_to_an_internal_address_is_refused_for_good(settings, network):
    async with _Receiver(_ok) as internal:
        network["metadata.attacker.example"] = ["169.254.169.254"]
        network["inside.attacker.example"] = ["127.0.0.1"]
        for host in ("metadata.attacker.example", "inside.attacker.example", "127.0.0.1", "[::1]"):
            with pytest.raises(ApplicationError) as err:
                await WebhookActivities(settings).call_webhook(_request(f"http://{host}:{internal.port}/"))
            assert err.value.type == WEBHOOK_REJECTED and err.value.non_retryable, host
        assert internal.connections == 0


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "64:ff9b:1::7f00:1",  # the local-use NAT64 prefix
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "2002:a00:1::1",  # 6to4 of 10.0.0.1
        "::127.0.0.1",  # IPv4-compatible
        "::ffff:127.0.0.1",  # IPv4-mapped
    ],
)
async def test_an_ipv6_address_carrying_an_internal_ipv4_address_is_refused_for_good(
    settings, network, address
):
    network["nat64.attacker.example"] = [address]
    with pytest.raises(ApplicationError) as err:
        await WebhookActivities(settings).call_webhook(_request("http://nat64.attacker.example/"))
    assert err.value.type == WEBHOOK_REJECTED and err.value.non_retryable
    assert address.split("::")[0] in str(err.value)


async def test_an_ipv6_address_carrying_a_public_ipv4_address_may_be_called(network):
    for address in (
        "64:ff9b::5db8:d822",
        "2002:5db8:d822::1",
        "2606:4700::1111",
    ):  # 93.184.216.34; Cloudflare
        network["hooks.partner.example"] = [address]
        target = await checked_target("https://hooks.partner.example/in", allow_private=False)
        assert target.url == f"https://[{address}]/in" and target.tls_name == "hooks.partner.example"


async def test_a_public_receiver_gets_the_call_at_the_checked_address_under_its_own_name(settings, network):
    async with _Receiver(_ok) as receiver:
        port = network.public_port = receiver.port
        network["hooks.partner.example"] = [PUBLIC, "127.0.0.1"]  # a second lookup would say loopback
        result = await WebhookActivities(settings).call_webhook(
            _request(f"http://hooks.partner.example:{port}/in?x=1")
        )
    assert result.status_code == 200
    [head] = receiver.heads
    assert head.startswith(b"POST /in?x=1 HTTP/1.1\r\n")
    assert f"host: hooks.partner.example:{port}\r\n".encode() in head.lower()
    assert b"journeys-signature: t=" in head.lower()


async def _endless_body(writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (65536, b"x" * 65536)
    while True:  # gigabytes, as fast as the client takes them
        writer.write(chunk)
        await writer.drain()


async def test_a_receiver_streaming_an_endless_body_does_not_hold_the_worker(settings, network):
    allowed = settings.model_copy(update={"webhook_allow_private_addresses": True})
    async with _Receiver(_endless_body) as receiver:
        result = await asyncio.wait_for(
            WebhookActivities(allowed).call_webhook(_request(f"http://127.0.0.1:{receiver.port}/")),
            timeout=10,
        )
    assert result.status_code == 200


async def _dripping_headers(writer: asyncio.StreamWriter) -> None:
    for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 10_000:
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(0.1)  # always under the 1 s read timeout, never done


async def test_a_receiver_dripping_its_answer_is_cut_off_at_the_timeout_and_retried(settings, network):
    allowed = settings.model_copy(update={"webhook_allow_private_addresses": True})
    async with _Receiver(_dripping_headers) as receiver:
        with pytest.raises(ApplicationError) as err:
            await asyncio.wait_for(
                WebhookActivities(allowed).call_webhook(_request(f"http://127.0.0.1:{receiver.port}/")),
                timeout=10,
            )
    assert not err.value.non_retryable and "1s" in str(err.value)


def test_a_receiver_refuses_a_signature_header_with_odd_characters():
    # What a receiver's own code does with what arrives: a header it cannot have come from us is
    # refused (a non-ASCII one raised TypeError inside the comparison).
    body, at = b'{"kind": "welcome"}', 1_800_000_000
    good = sign("s3cret", at, body)
    assert verify("s3cret", good, body, now=at)
    for header in (good.replace("v1=", "v1=é"), f"t={at},v1=ünïcode", "t=é", "", ","):
        assert not verify("s3cret", header, body, now=at)


def _dead_port() -> int:
    """A local port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def proxy_variables_for_something_else(monkeypatch) -> str:
    """Proxy variables a deployment set for another program, pointing at a port that refuses."""
    dead = f"http://127.0.0.1:{_dead_port()}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, dead)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    return dead


async def test_the_environments_proxy_variables_do_not_route_webhooks(
    settings, proxy_variables_for_something_else
):
    allowed = settings.model_copy(update={"webhook_allow_private_addresses": True})
    async with _Receiver(_ok) as receiver:
        result = await WebhookActivities(allowed).call_webhook(
            _request(f"http://127.0.0.1:{receiver.port}/hook")
        )
        assert result.status_code == 200
        assert receiver.connections == 1 and receiver.heads[0].startswith(b"POST /hook HTTP/1.1")


async def test_the_configured_proxy_carries_webhooks(settings, proxy_variables_for_something_else):
    async with _Receiver(_ok) as proxy, _Receiver(_ok) as receiver:
        proxied = settings.model_copy(
            update={
                "webhook_allow_private_addresses": True,
                "webhook_proxy": f"http://127.0.0.1:{proxy.port}",
            }
        )
        url = f"http://127.0.0.1:{receiver.port}/hook"
        result = await WebhookActivities(proxied).call_webhook(_request(url))
        assert result.status_code == 200
        # the proxy got the request, in the absolute form a proxy is asked with; the receiver nothing
        assert proxy.connections == 1 and proxy.heads[0].startswith(f"POST {url} HTTP/1.1".encode())
        assert receiver.connections == 0


async def test_the_configured_proxy_does_not_open_private_addresses(settings, network):
    async with _Receiver(_ok) as proxy:
        proxied = settings.model_copy(update={"webhook_proxy": f"http://127.0.0.1:{proxy.port}"})
        network["inside.attacker.example"] = ["10.0.0.7"]
        with pytest.raises(ApplicationError) as err:
            await WebhookActivities(proxied).call_webhook(_request("http://inside.attacker.example/"))
        assert err.value.type == WEBHOOK_REJECTED and err.value.non_retryable
        assert proxy.connections == 0


@pytest.mark.parametrize("value", ["proxy.internal:3128", "socks5://proxy:1080", "http://", "http://p:99999"])
def test_a_proxy_setting_that_is_not_an_http_proxy_url_is_refused_naming_it(tmp_path, value):
    with pytest.raises(ValidationError) as err:
        Settings(dev_mode=True, data_dir=tmp_path, webhook_proxy=value)
    assert err.value.errors()[0]["loc"] == ("webhook_proxy",)


def _certificates(directory, *names: str) -> tuple[object, ssl.SSLContext]:
    """A private CA's PEM file and a server's TLS context with a certificate it signed for ``names``
    (host names, or IP addresses)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def issue(subject: str, key, issuer_name, issuer_key, *, ca: bool, san=None):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer_name or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = issue("Corp Test CA", ca_key, None, ca_key, ca=True)
    san = []
    for name in names:
        try:
            san.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            san.append(x509.DNSName(name))
    server = issue(names[0], server_key, ca.subject, ca_key, ca=False, san=san)
    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(ca.public_bytes(pem))
    (directory / "server.pem").write_bytes(server.public_bytes(pem))
    (directory / "server.key").write_bytes(
        server_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(directory / "server.pem", directory / "server.key")
    return directory / "ca.pem", tls


async def test_a_receiver_behind_a_private_ca_fails_clearly_until_its_ca_bundle_is_set(
    settings, tmp_path, monkeypatch
):
    ca, tls = _certificates(tmp_path, "127.0.0.1")
    # The environment's CA settings are not read for webhooks, so they do not make it trusted.
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
    allowed = settings.model_copy(update={"webhook_allow_private_addresses": True})
    async with _Receiver(_ok, tls=tls) as receiver:
        url = f"https://127.0.0.1:{receiver.port}/hook"
        with pytest.raises(ApplicationError) as err:
            await WebhookActivities(allowed).call_webhook(_request(url))
        message = str(err.value)
        assert "TLS certificate is not trusted" in message and "JOURNEYS_WEBHOOK_CA_BUNDLE" in message
        assert "unable to get local issuer certificate" in message
        assert not err.value.non_retryable and receiver.heads == []

        trusting = Settings(
            dev_mode=True, data_dir=tmp_path, webhook_allow_private_addresses=True, webhook_ca_bundle=ca
        )
        result = await WebhookActivities(trusting).call_webhook(_request(url))
        assert result.status_code == 200
        assert len(receiver.heads) == 1 and receiver.heads[0].startswith(b"POST /hook HTTP/1.1")


async def test_a_ca_bundle_checks_the_receivers_name_at_its_checked_address(settings, tmp_path, network):
    ca, tls = _certificates(tmp_path, "hooks.corp.example")
    trusting = settings.model_copy(update={"webhook_ca_bundle": ca})
    async with _Receiver(_ok, tls=tls) as receiver:
        network["hooks.corp.example"] = [PUBLIC]
        network["other.corp.example"] = [PUBLIC]
        network.public_port = receiver.port
        result = await WebhookActivities(trusting).call_webhook(
            _request(f"https://hooks.corp.example:{receiver.port}/hook")
        )
        assert result.status_code == 200 and receiver.heads[0].startswith(b"POST /hook HTTP/1.1")
        with pytest.raises(ApplicationError, match=r"TLS certificate is not trusted.*Hostname mismatch"):
            await WebhookActivities(trusting).call_webhook(
                _request(f"https://other.corp.example:{receiver.port}/hook")
            )
        assert len(receiver.heads) == 1


def test_a_ca_bundle_that_is_missing_or_holds_no_certificate_is_refused_at_start_up(tmp_path):
    (tmp_path / "empty.pem").write_text("not a certificate\n")
    for value in (tmp_path / "absent.pem", tmp_path, tmp_path / "empty.pem"):
        with pytest.raises(ValidationError) as err:
            Settings(dev_mode=True, data_dir=tmp_path, webhook_ca_bundle=value)
        assert err.value.errors()[0]["loc"] == ("webhook_ca_bundle",), value
        assert str(value) in str(err.value)
    assert Settings(dev_mode=True, data_dir=tmp_path, webhook_ca_bundle="").webhook_ca_bundle is None
