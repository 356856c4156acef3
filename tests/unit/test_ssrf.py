"""The webhook destination guard: address ranges, URL checks, resolution, and an aiohttp request through
the guarded connector to a loopback test server (refused unless private networks are allowed)."""

import socket

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from schemas.ssrf import (
    DestinationRefused,
    GuardedResolver,
    check_url,
    forbidden_reason,
    guarded_connector,
    guarded_socket_factory,
    is_forbidden,
    refusal,
    resolve_allowed,
)

FORBIDDEN = [
    ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("::1", "loopback"),
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("172.31.255.255", "private"), ("192.168.1.1", "private"),
    ("169.254.1.1", "link-local"), ("fe80::1", "link-local"), ("fe80::1%eth0", "link-local"),
    ("224.0.0.1", "multicast"), ("239.255.255.250", "multicast"), ("ff02::1", "multicast"),
    ("0.0.0.0", "unspecified"), ("::", "unspecified"), ("240.0.0.1", "reserved"), ("255.255.255.255", "reserved"),
    ("100.64.0.1", "carrier-grade NAT"), ("100.127.255.254", "carrier-grade NAT"),
    ("fc00::1", "private"), ("fd12:3456::1", "private"), ("192.0.0.8", "reserved"), ("198.18.0.1", "private"),
    ("169.254.169.254", "cloud metadata"), ("fd00:ec2::254", "cloud metadata"), ("168.63.129.16", "cloud metadata"),
    ("::ffff:127.0.0.1", "IPv6 form of an address that is loopback"),
    ("::ffff:10.0.0.1", "IPv6 form of an address that is private"),
    ("::ffff:169.254.1.1", "IPv6 form of an address that is link-local"),
    ("::ffff:169.254.169.254", "cloud metadata"), ("2002:a9fe:a9fe::", "cloud metadata"),
    ("2002:7f00:1::", "IPv6 form of an address that is loopback"),
    ("64:ff9b::a00:1", "IPv6 form of an address that is private"),
    ("2001:db8::1", "private"),
]
ALLOWED = ["8.8.8.8", "1.1.1.1", "93.184.215.14", "100.63.255.255", "100.128.0.0", "172.32.0.1",
           "2606:4700:4700::1111", "2a00:1450:4001::200e", "::ffff:8.8.8.8"]


@pytest.mark.parametrize(("ip", "why"), FORBIDDEN)
def test_internal_addresses_are_forbidden(ip, why):
    assert is_forbidden(ip)
    assert why in forbidden_reason(ip)


@pytest.mark.parametrize("ip", ALLOWED)
def test_public_addresses_are_allowed(ip):
    assert not is_forbidden(ip) and forbidden_reason(ip) is None


def test_allowing_private_networks_still_refuses_cloud_metadata():
    assert forbidden_reason("127.0.0.1", allow_private=True) is None
    assert forbidden_reason("10.0.0.1", allow_private=True) is None
    assert forbidden_reason("169.254.169.254", allow_private=True) == "a cloud metadata address"
    assert forbidden_reason("fd00:ec2::254", allow_private=True) == "a cloud metadata address"
    assert forbidden_reason("::ffff:169.254.169.254", allow_private=True) == "a cloud metadata address"


def test_something_that_is_no_address_is_a_value_error():
    with pytest.raises(ValueError):
        is_forbidden("localhost")


@pytest.mark.parametrize("url", ["https://hooks.example.com/agentronics", "http://example.com:8080/a?b=1#c",
                                 "https://bücher.de/x", "http://8.8.8.8/", "http://[2606:4700:4700::1111]:443/",
                                 "http://localhost:9000/", "http://host_name.internal./"])
def test_a_valid_destination_is_returned_as_given(url):
    assert check_url(url) == url


@pytest.mark.parametrize(("url", "why"), [
    ("ftp://example.com/", "only http and https"), ("javascript:alert(1)", "only http and https"),
    ("file:///etc/passwd", "only http and https"), ("//example.com/x", "only http and https"),
    ("http:///path", "no host"), ("http://user:pw@example.com/", "user name or password"),
    ("http://@example.com/", "user name or password"), ("http://token@example.com/", "user name or password"),
    ("http://example.com:99999/", "not a valid URL"), ("http://example.com:0/", "port 0"),
    ("http://exa mple.com/", "whitespace"), ("http://example.com/\n", "whitespace"),
    ("http://2130706433/", "not a canonical IP address"), ("http://127.1/", "not a canonical IP address"),
    ("http://0x7f.0.0.1/", "not a canonical IP address"), ("http://ex!ample.com/", "not a valid host name"),
    ("http://example.com\\@evil.com/", "not a valid URL"), ("https://" + "a" * 2048 + ".com/", "longer than 2048"),
    ("", "expected an http or https URL")])
def test_an_invalid_destination_says_why(url, why):
    with pytest.raises(ValueError, match=why):
        check_url(url)


def test_a_forbidden_ip_host_is_refused_when_private_networks_are_not_allowed():
    assert check_url("http://127.0.0.1:8080/") == "http://127.0.0.1:8080/"
    with pytest.raises(ValueError, match="127.0.0.1 is loopback"):
        check_url("http://127.0.0.1:8080/", allow_private=False)
    with pytest.raises(ValueError, match="is link-local"):
        check_url("http://[fe80::1]/", allow_private=False)
    with pytest.raises(ValueError, match="cloud metadata"):
        check_url("http://169.254.169.254/latest/meta-data/")
    assert check_url("http://8.8.8.8/", allow_private=False) == "http://8.8.8.8/"


async def test_resolution_refuses_loopback_unless_private_networks_are_allowed():
    with pytest.raises(DestinationRefused, match=r"localhost \(.+\) is loopback"):
        await resolve_allowed("localhost", 80, allow_private=False)
    assert "127.0.0.1" in await resolve_allowed("localhost", 80, allow_private=True)


async def test_ip_literals_are_checked_without_a_lookup():
    assert await resolve_allowed("8.8.8.8", 443, allow_private=False) == ["8.8.8.8"]
    with pytest.raises(DestinationRefused, match="destination 10.0.0.1 is private"):
        await resolve_allowed("10.0.0.1", 443, allow_private=False)
    assert await resolve_allowed("10.0.0.1", 443, allow_private=True) == ["10.0.0.1"]
    with pytest.raises(DestinationRefused, match="cloud metadata"):
        await resolve_allowed("169.254.169.254", 80, allow_private=True)


async def test_a_name_that_does_not_resolve_is_a_lookup_error():
    with pytest.raises(socket.gaierror):
        await resolve_allowed("name.invalid", 80, allow_private=True)


async def test_the_guarded_resolver_refuses_a_name_with_a_forbidden_address():
    refusing, allowing = GuardedResolver(allow_private=False), GuardedResolver(allow_private=True)
    with pytest.raises(DestinationRefused, match="is loopback"):
        await refusing.resolve("localhost", 80, socket.AF_INET)
    assert [r["host"] for r in await allowing.resolve("localhost", 80, socket.AF_INET)] == ["127.0.0.1"]
    await refusing.close()
    await allowing.close()


def test_the_socket_factory_refuses_a_forbidden_address_and_opens_a_public_one():
    with pytest.raises(DestinationRefused, match="destination 127.0.0.1 is loopback"):
        guarded_socket_factory(False)((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 80)))
    sock = guarded_socket_factory(False)((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("8.8.8.8", 80)))
    sock.close()


@pytest.fixture
async def loopback_server():
    async def hello(_request: web.Request) -> web.Response:
        return web.Response(text="delivered")

    app = web.Application()
    app.router.add_post("/hook", hello)
    async with TestServer(app, host="127.0.0.1") as server:
        yield server


async def _post(connector: aiohttp.BaseConnector, url: str) -> str:
    async with aiohttp.ClientSession(connector=connector) as session, session.post(url, data=b"{}") as response:
        return await response.text()


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
async def test_a_request_to_a_loopback_server_is_refused_unless_private_networks_are_allowed(loopback_server, host):
    url = f"http://{host}:{loopback_server.port}/hook"
    with pytest.raises(aiohttp.ClientConnectorError) as exc:
        await _post(guarded_connector(allow_private=False), url)
    assert "is loopback" in str(refusal(exc.value))
    assert await _post(guarded_connector(allow_private=True), url) == "delivered"


async def test_the_resolver_alone_guards_names_in_a_plain_tcp_connector(loopback_server):
    url = f"http://localhost:{loopback_server.port}/hook"
    with pytest.raises(aiohttp.ClientConnectorError) as exc:
        await _post(aiohttp.TCPConnector(resolver=GuardedResolver(allow_private=False)), url)
    assert isinstance(refusal(exc.value), DestinationRefused)
    assert await _post(aiohttp.TCPConnector(resolver=GuardedResolver(allow_private=True)), url) == "delivered"


def test_refusal_is_none_for_other_errors():
    assert refusal(ConnectionRefusedError("refused")) is None
    try:
        try:
            raise DestinationRefused("destination 10.0.0.1 is private")
        except DestinationRefused as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert str(refusal(outer)) == "destination 10.0.0.1 is private"
